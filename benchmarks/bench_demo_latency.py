"""Drag demo latency: first frame and frames per second through the WebSocket vs calling ``generate`` directly.

    python benchmarks/bench_demo_latency.py [--frames 8] [--repeats 5] [--threads 1]

Both sides run the bundled Sprites-Drag student (CPU, pixel codec, 32x32, N = 3 steps) on the
same held-out scene, drag path and seed, with the control drawn over the same ``max_frames``:

- direct: ``policies.generate`` in this process; the clock starts at the call.
- websocket: the demo app on uvicorn (127.0.0.1, a free port, in a thread of this process) and a
  ``websockets`` client; the clock starts when the ``start`` message is sent, a frame counts when
  its binary message has arrived (PNG-encoded, through the loopback socket).

Printed per side (median over ``repeats`` runs, the two sides alternating): first-frame latency, fps =
frames / (time until the last frame), and the overhead ratio websocket / direct of each.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time

import torch
import uvicorn
from hydra.utils import instantiate
from omegaconf import OmegaConf
from websockets.sync.client import connect

from examples.ar_drag import components
from examples.demo.protocol import paths_to_trajectory, unpack
from examples.demo.server import create_app
from examples.demo.session import DemoModel
from examples.drag_demo import scenes_of
from policies import generate
from rldiff.data.sprites import SpritesDrag
from rldiff.types import Control


def build(max_frames: int):
    codec = instantiate(OmegaConf.structured(components.PixelCodecConf))
    policy = instantiate(OmegaConf.structured(components.SpritesStudentConf), codec=codec, step=OmegaConf.structured(components.CPSStepConf))
    policy.model.eval()
    return DemoModel(policy, codec, 32, 32, 8, max_frames), scenes_of(SpritesDrag(split="heldout"), 4, 32, 32)


def direct(model: DemoModel, scene, paths, frames: int, seed: int) -> tuple[float, float]:
    """(first-frame latency s, fps) of ``generate`` pulled for ``frames`` frames."""
    traj = paths_to_trajectory([torch.tensor(p) for p in paths], model.pixel_frames(model.max_frames), model.pace)[None]  # [1, T, K, 2]
    control = Control(trajectory=traj, visibility=torch.ones(traj.shape[:3], dtype=torch.bool), reference=scene.reference[None], prompt=[scene.caption])
    policy = model.policy
    start = time.perf_counter()
    gen = generate(policy, policy.encoder, model.codec, control, model.max_frames, policy.num_steps, policy.shift, generator=torch.Generator().manual_seed(seed))
    first = None
    for _ in range(frames):
        next(gen)
        first = first or time.perf_counter() - start
    total = time.perf_counter() - start
    gen.close()
    return first, frames / total


def over_websocket(url: str, paths, frames: int, seed: int) -> tuple[float, float]:
    """(first-frame latency s, fps) of a ``start`` for ``frames`` frames, measured by the client."""
    with connect(url, max_size=None) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        start = time.perf_counter()
        ws.send(json.dumps({"type": "start", "scene": 0, "paths": paths, "frames": frames, "seed": seed}))
        first, count = None, 0
        while count < frames:
            msg = ws.recv()
            if isinstance(msg, bytes) and unpack(msg)[0]["type"] == "frame":
                count += 1
                first = first or time.perf_counter() - start
        total = time.perf_counter() - start
        while json.loads(ws.recv())["type"] != "done":
            pass
    return first, frames / total


def serve(model: DemoModel, scenes) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(model, scenes, max_sessions=2), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"ws://127.0.0.1:{sock.getsockname()[1]}/ws", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="latent frames per run (the clip: 8)")
    parser.add_argument("--max-frames", type=int, default=24, help="the stream's max_frames (control drawn over it on both sides)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per side (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, scenes = build(args.max_frames)
    start = scenes[0].starts[0]
    paths = [[start, [min(1.0, start[0] + 0.3) if start[0] < 0.5 else start[0] - 0.3, start[1]]]]
    url, server = serve(model, scenes)
    direct(model, scenes[0], paths, 2, 0)  # warm-up both paths
    over_websocket(url, paths, 2, 0)
    runs = {"direct": [], "websocket": []}
    for r in range(args.repeats):  # alternating order (ABBA) so a drifting machine load hits both sides alike
        sides = [("direct", lambda: direct(model, scenes[0], paths, args.frames, r)), ("websocket", lambda: over_websocket(url, paths, args.frames, r))]
        for name, run in sides if r % 2 == 0 else sides[::-1]:
            runs[name].append(run())
    server.should_exit = True
    med = {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs)) for k, vs in runs.items()}
    print(f"drag demo latency: bundled Sprites-Drag student, 32x32, N = 3, {args.frames} frames, {args.threads} thread(s), median of {args.repeats}")
    print(f"| path | first frame (s) | fps |\n|---|---|---|")
    for k, (first, fps) in med.items():
        print(f"| {k} | {first:.3f} | {fps:.1f} |")
    (d_first, d_fps), (w_first, w_fps) = med["direct"], med["websocket"]
    print(f"overhead ratio websocket / direct: first frame {w_first / d_first:.2f}x, time per frame {d_fps / w_fps:.2f}x")


if __name__ == "__main__":
    main()
