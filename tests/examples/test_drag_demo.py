"""The drag demo's protocol through starlette's WebSocket test client, on the bundled Sprites-Drag student.

Frames arrive in order and equal ``policies.generate``'s; a control change shows in the echoed
version and in where the sprite goes; bad messages get an error and the session goes on;
a disconnect stops generation; the session limit makes the next page wait.
"""

import base64
import re
import json
import time

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from starlette.testclient import TestClient

from examples.ar_drag import components
from examples.demo.protocol import ProtocolError, pack, parse_message, paths_to_trajectory, unpack
from examples.demo.server import create_app
from examples.demo.session import DemoModel
from examples.drag_demo import clip_frames, scenes_of
from policies import generate
from rldiff.data.sprites import SpritesDrag
from rldiff.types import Control
from rewards.sprites import SpritesQualityReward

CLIP = 8  # latent frames of a clip (the bundled world: 8 frames, pixel codec)


@pytest.fixture(scope="module")
def world():
    codec = instantiate(OmegaConf.structured(components.PixelCodecConf))
    policy = instantiate(OmegaConf.structured(components.SpritesStudentConf), codec=codec, step=OmegaConf.structured(components.CPSStepConf))
    scenes = scenes_of(SpritesDrag(split="heldout"), 64, 32, 32)
    return policy, codec, scenes


def make_app(world, max_frames=24, max_sessions=2, **kw):
    policy, codec, scenes = world
    return create_app(DemoModel(policy, codec, 32, 32, CLIP, max_frames), scenes, max_sessions, **kw)


def one_sprite_scene(scenes) -> int:
    """A held-out scene with one sprite near the middle (room to drag 0.35 either way)."""
    return next(i for i, s in enumerate(scenes) if len(s.starts) == 1 and 0.4 <= s.starts[0][0] <= 0.6)


def horizontal(start, dx):
    return [[start, [start[0] + dx, start[1]]]]


def receive(ws):
    """The next message: ("json", dict) or (header dict, payload bytes)."""
    msg = ws.receive()
    if msg.get("text") is not None:
        return "json", json.loads(msg["text"])
    return unpack(msg["bytes"])


def start(ws, **fields):
    ws.send_text(json.dumps({"type": "start", **fields}))
    kind, msg = receive(ws)
    assert kind == "json" and msg["type"] == "started", msg


def frames_until_done(ws) -> tuple[list, dict, list]:
    """(frame headers and pixels, the done message, other JSON messages) until ``done``."""
    frames, others = [], []
    while True:
        head, body = receive(ws)
        if head == "json":
            if body["type"] == "done":
                return frames, body, others
            others.append(body)
        else:
            pixels = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # [H, W, 3]
            frames.append((head, pixels))


def video(frames) -> torch.Tensor:
    return torch.from_numpy(np.stack([p for _, p in frames])).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)  # [1, T, 3, H, W]


def sprite_x(frames, scene) -> torch.Tensor:
    """x of the dragged sprite in each frame (template search over the whole frame)."""
    clip = video(frames)
    t = clip.shape[1]
    control = Control(trajectory=torch.tensor(scene.starts).expand(1, t, 1, 2).clone(), visibility=torch.ones(1, t, 1, dtype=torch.bool), reference=scene.reference[None], prompt=[""])
    quality = SpritesQualityReward()
    quality.reset(control)
    return quality.locate(clip)[0, :, 0, 0]  # [T]


def wait_status(client, predicate, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/api/status").json()
        if predicate(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


# ----------------------------------------------------------------------------- pure parts
def test_paths_are_timed_at_constant_pace():
    # path (0.2, 0.5) -> (0.6, 0.5) -> (0.6, 0.7), length 0.6, pace 0.1 per frame:
    # x = 0.2 0.3 0.4 0.5 0.6 then down the second segment y = 0.6 0.7, then it holds at the end
    traj = paths_to_trajectory([torch.tensor([[0.2, 0.5], [0.6, 0.5], [0.6, 0.7]])], 9, 0.1)  # [T, K, 2]
    expected = [[0.2, 0.5], [0.3, 0.5], [0.4, 0.5], [0.5, 0.5], [0.6, 0.5], [0.6, 0.6], [0.6, 0.7], [0.6, 0.7], [0.6, 0.7]]
    torch.testing.assert_close(traj[:, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    single = paths_to_trajectory([torch.tensor([[0.3, 0.4]])], 3, 0.1)  # a click: the sprite holds still
    torch.testing.assert_close(single[:, 0], torch.tensor([[0.3, 0.4]] * 3))


def test_binary_envelope_round_trips_and_messages_parse():
    header, payload = unpack(pack({"type": "frame", "index": 3}, b"\x89PNG"))
    assert header == {"type": "frame", "index": 3} and payload == b"\x89PNG"
    msg = parse_message(json.dumps({"type": "start", "scene": 2, "paths": [[[0.1, 0.2], [0.3, 0.4]]], "frames": 3}))
    assert msg.scene == 2 and msg.frames == 3 and msg.paths[0].shape == (2, 2)
    for bad, words in [
        ("{", "not JSON"), ("[1]", "JSON object"), ('{"type": "dance"}', "unknown message type"),
        ('{"type": "paths", "paths": []}', "1 to 8 paths"), ('{"type": "paths", "paths": [[[0.5, 1.5]]]}', "paths[0][0]"),
        ('{"type": "paths", "paths": [[[0.5, NaN]]]}', "paths[0][0]"), ('{"type": "start", "paths": [[[0.5, 0.5]]]}', "exactly one of"),
        ('{"type": "continue", "frames": 0}', "'frames' must be an integer >= 1"), ('{"type": "download", "format": "avi"}', "'format'"),
    ]:  # fmt: skip
        with pytest.raises(ProtocolError, match=re.escape(words)):
            parse_message(bad)


def test_clip_frames_names_the_mismatch():
    assert clip_frames(8, 1, 1) == 8 and clip_frames(21, 4, 1) == 6
    with pytest.raises(ValueError, match="controls.num_frames = 8 .* temporal_factor = 4"):
        clip_frames(8, 4, 1)


# ----------------------------------------------------------------------------- the WebSocket session
def test_frames_arrive_in_order_and_equal_generate(world):
    policy, codec, scenes = world
    i = one_sprite_scene(scenes)
    paths = horizontal(scenes[i].starts[0], 0.3)
    with TestClient(make_app(world)) as client, client.websocket_connect("/ws") as ws:
        assert receive(ws) == ("json", {"type": "ready", "limit": 2})
        start(ws, scene=i, paths=paths, seed=5)
        frames, done, _ = frames_until_done(ws)
    assert [h["index"] for h, _ in frames] == list(range(CLIP)) and [h["latent_index"] for h, _ in frames] == list(range(CLIP))
    assert {h["version"] for h, _ in frames} == {1} and done == {"type": "done", "frames": CLIP, "reason": "budget", "max_frames": 24}
    assert all(a["latency_s"] < b["latency_s"] for (a, _), (b, _) in zip(frames, frames[1:]))
    # the same control and seed through generate directly (the stream draws its control over max_frames = 24)
    traj = paths_to_trajectory([torch.tensor(p) for p in paths], 24, 0.05)[None]  # [1, T, K, 2]
    control = Control(trajectory=traj, visibility=torch.ones(traj.shape[:3], dtype=torch.bool), reference=scenes[i].reference[None], prompt=[scenes[i].caption])
    direct = generate(policy, policy.encoder, codec, control, 24, policy.num_steps, policy.shift, generator=torch.Generator().manual_seed(5))
    expected = torch.cat([next(direct).frames for _ in range(CLIP)], dim=1)  # [1, T, 3, H, W]
    torch.testing.assert_close(video(frames), (expected.clamp(0, 1) * 255).round() / 255, atol=1 / 255 + 1e-6, rtol=0)


def test_a_change_applies_to_later_frames_and_moves_the_sprite(world):
    _, _, scenes = world
    i = one_sprite_scene(scenes)
    s = scenes[i].starts[0]
    with TestClient(make_app(world)) as client, client.websocket_connect("/ws") as ws:
        receive(ws)
        start(ws, scene=i, paths=horizontal(s, 0.35), seed=1)  # right for the whole clip
        right, _, _ = frames_until_done(ws)
        start(ws, scene=i, paths=horizontal(s, 0.35), seed=1, frames=3)  # right for 3 frames, then left
        first, done, _ = frames_until_done(ws)
        assert done["reason"] == "budget" and done["frames"] == 3
        ws.send_text(json.dumps({"type": "paths", "paths": horizontal(s, -0.35)}))
        assert receive(ws) == ("json", {"type": "control", "version": 2, "from_frame": 3})
        ws.send_text(json.dumps({"type": "continue", "frames": CLIP - 3}))
        rest, _, _ = frames_until_done(ws)
    changed = first + rest
    assert [h["version"] for h, _ in changed] == [1, 1, 1, 2, 2, 2, 2, 2]
    torch.testing.assert_close(video(changed)[:, :3], video(right)[:, :3])  # finished frames keep their control
    x_right, x_changed = sprite_x(right, scenes[i]), sprite_x(changed, scenes[i])
    assert x_right[-1] > s[0] + 0.15, f"the sprite did not follow the drag right: x = {x_right.tolist()}"
    assert x_changed[-1] < x_right[-1] - 0.3, f"the change did not move the sprite left: {x_changed.tolist()} vs {x_right.tolist()}"


def test_a_change_while_streaming_is_echoed_and_versions_never_go_back(world):
    _, _, scenes = world
    i = one_sprite_scene(scenes)
    s = scenes[i].starts[0]
    with TestClient(make_app(world)) as client, client.websocket_connect("/ws") as ws:
        receive(ws)
        start(ws, scene=i, paths=horizontal(s, 0.35), frames=24)
        head, _ = receive(ws)
        assert head["index"] == 0
        ws.send_text(json.dumps({"type": "paths", "paths": horizontal(s, -0.35)}))
        frames, done, others = frames_until_done(ws)
    versions = [1] + [h["version"] for h, _ in frames]
    assert others[0]["type"] == "control" and others[0]["version"] == 2
    assert versions == sorted(versions) and versions[-1] == 2 and done["reason"] == "max_frames"
    assert [h["index"] for h, _ in frames] == list(range(1, 24))  # past the clip with the rolling KV window


def test_stop_continue_past_the_clip_and_download(world):
    _, _, scenes = world
    with TestClient(make_app(world, max_frames=16)) as client, client.websocket_connect("/ws") as ws:
        receive(ws)
        start(ws, scene=0, paths=horizontal([0.5, 0.5], 0.2), frames=16)
        ws.send_text(json.dumps({"type": "stop"}))
        frames, done, _ = frames_until_done(ws)
        assert done["reason"] == "stopped" and 1 <= len(frames) < 16
        ws.send_text(json.dumps({"type": "continue", "frames": 100}))
        more, done, _ = frames_until_done(ws)
        assert [h["index"] for h, _ in frames + more] == list(range(16)) and done["reason"] == "max_frames"
        for fmt, magic in [("gif", b"GIF89a"), ("mp4", b"ftyp")]:
            ws.send_text(json.dumps({"type": "download", "format": fmt}))
            head, data = receive(ws)
            assert head == {"type": "clip", "format": fmt, "frames": 16, "bytes": len(data)} and magic in data[:12]


def test_bad_messages_get_an_error_and_the_session_goes_on(world):
    ok, buf = cv2.imencode(".png", np.full((48, 64, 3), 128, np.uint8))
    upload = "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()
    with TestClient(make_app(world)) as client, client.websocket_connect("/ws") as ws:
        receive(ws)
        for bad, words in [
            ("not json", "not JSON"), (json.dumps({"type": "paths", "paths": [[[0.5, 0.5]]]}), "before 'start'"),
            (json.dumps({"type": "continue"}), "before 'start'"), (json.dumps({"type": "download"}), "nothing to download"),
            (json.dumps({"type": "start", "scene": 999, "paths": [[[0.5, 0.5]]]}), "'scene' must be < 64"),
            (json.dumps({"type": "start", "image": "data:image/png;base64,AAAA", "paths": [[[0.5, 0.5]]]}), "could not be decoded"),
            (json.dumps({"type": "start", "scene": 0, "paths": "left"}), "'paths' must be a list"),
        ]:  # fmt: skip
            ws.send_text(bad)
            kind, msg = receive(ws)
            assert kind == "json" and msg["type"] == "error" and words in msg["message"], (bad, msg)
        ws.send_bytes(b"\x00\x01")
        assert "JSON text" in receive(ws)[1]["message"]
        start(ws, image=upload, paths=[[[0.5, 0.5], [0.7, 0.5]]], prompt="a grey card", frames=2)  # an uploaded image works
        frames, done, _ = frames_until_done(ws)
        assert len(frames) == 2 and frames[0][1].shape == (32, 32, 3) and done["reason"] == "budget"


def test_disconnect_stops_generation_and_frees_the_slot(world):
    with TestClient(make_app(world, max_frames=64)) as client:
        with client.websocket_connect("/ws") as ws:
            receive(ws)
            start(ws, scene=0, paths=horizontal([0.5, 0.5], 0.2), frames=64)
            receive(ws)
            receive(ws)
        status = wait_status(client, lambda s: s["active"] == 0 and s["streams_open"] == 0)
        assert status["active"] == 0 and status["streams_open"] == 0, status
        time.sleep(0.5)
        after = client.get("/api/status").json()["frames_generated"]
        assert after == status["frames_generated"] < 64, "generation went on after the page disconnected"


def test_session_limit_makes_the_next_page_wait(world):
    with TestClient(make_app(world, max_sessions=1)) as client:
        with client.websocket_connect("/ws") as first:
            assert receive(first)[1]["type"] == "ready"
            with client.websocket_connect("/ws") as waiting:
                assert receive(waiting) == ("json", {"type": "wait", "position": 1, "limit": 1})
                assert wait_status(client, lambda s: s["waiting"] == 1)["active"] == 1
                first.close()
                assert receive(waiting) == ("json", {"type": "ready", "limit": 1})
                start(waiting, scene=0, paths=horizontal([0.5, 0.5], 0.2), frames=1)
                assert len(frames_until_done(waiting)[0]) == 1
