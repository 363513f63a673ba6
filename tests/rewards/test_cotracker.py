"""CoTrackerTracker's conventions, checked against a stand-in predictor.

CoTracker3 is not installable here (no package index entry, no weights), so
these tests use a small stand-in that implements CoTracker's documented
predictor API (``hubconf.cotracker3_offline`` -> ``CoTrackerPredictor``):
``predictor(video, queries=queries)`` with video ``(1, T, 3, H, W)`` float in
0..255 and queries ``(1, N, 3)`` as (t, x, y) pixels (pixel centres at
integers) returning ``(tracks (1, T, N, 2) pixels, visibility (1, T, N) bool)``;
like the real offline predictor it rejects B > 1 and, like importing the real
model, it reseeds the global RNGs. The real CoTracker runs in
``test_real_cotracker`` when ``cotracker`` is importable and
``RLDIFF_COTRACKER_CHECKOUT`` / ``RLDIFF_COTRACKER_CHECKPOINT`` point at a local
checkout and weights.
"""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest
import torch

from rewards.trackers import CoTrackerTracker
from rldiff.protocols import PointTracker


class StandInPredictor(torch.nn.Module):
    """Moves every query by (+1, -0.5) pixels per frame after its query frame; hides point 1 on frame 2."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, video, queries=None):
        assert video.shape[0] == 1, "the offline predictor fails for B > 1"
        self.calls.append((video.clone(), queries.clone()))
        torch.manual_seed(1234)  # the real model disturbs the global RNG
        t = video.shape[1]
        frames = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1)  # [1, T, 1, 1]
        elapsed = frames - queries[:, None, :, :1]  # [1, T, N, 1] frames since the query frame
        tracks = queries[:, None, :, 1:] + elapsed * torch.tensor([1.0, -0.5])  # [1, T, N, 2] pixels
        vis = torch.ones(1, t, queries.shape[1], dtype=torch.bool)
        if t > 2 and queries.shape[1] > 1:
            vis[0, 2, 1] = False
        return tracks, vis


def stand_in_loader(store: list):
    def load():
        torch.manual_seed(0)  # importing CoTracker's offline model reseeds the global RNGs
        np.random.seed(0)
        random.seed(0)
        store.append(StandInPredictor())
        return store[-1]

    return load


def test_adapter_conventions_against_stand_in():
    store: list = []
    tracker = CoTrackerTracker(loader=stand_in_loader(store))
    assert isinstance(tracker, PointTracker)
    video = torch.rand(2, 4, 3, 16, 24)  # [B, T, 3, H, W], W = 24, H = 16
    queries = torch.tensor([[[0.0, 0.5, 0.25], [1.0, 0.25, 0.5]], [[0.0, 0.75, 0.75], [0.0, 0.1, 0.9]]])  # [2, 2, 3]
    torch.manual_seed(42)
    np.random.seed(42)
    random.seed(42)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    tracks, vis = tracker.track(video, queries)
    # the caller's RNG states survive loading and every call
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    predictor = store[0]
    assert len(store) == 1 and len(predictor.calls) == 2  # loaded once, one call per video
    for b, (clip, q) in enumerate(predictor.calls):
        assert clip.shape == (1, 4, 3, 16, 24) and torch.allclose(clip, video[b : b + 1] * 255)  # 0..255
    # query (0, 0.5, 0.25) -> pixels (0.5 * 24 - 0.5, 0.25 * 16 - 0.5) = (11.5, 3.5)
    assert torch.allclose(predictor.calls[0][1][0, 0], torch.tensor([0.0, 11.5, 3.5]))
    assert tracks.shape == (2, 4, 2, 2) and vis.shape == (2, 4, 2) and vis.dtype == torch.bool
    # back to normalized: ((11.5 + t) + 0.5) / 24 = 0.5 + t / 24, ((3.5 - 0.5 t) + 0.5) / 16 = 0.25 - t / 32
    t = torch.arange(4, dtype=torch.float32)
    assert torch.allclose(tracks[0, :, 0], torch.stack([0.5 + t / 24, 0.25 - t / 32], dim=-1), atol=1e-6)
    assert not bool(vis[0, 2, 1]) and int(vis.sum()) == 2 * 4 * 2 - 2


def test_online_reruns_on_frames_so_far():
    store: list = []
    tracker = CoTrackerTracker(loader=stand_in_loader(store))
    video = torch.rand(1, 4, 3, 16, 24)
    queries = torch.tensor([[[0.0, 0.5, 0.25], [2.0, 0.25, 0.5]]])  # point 1 starts at frame 2
    offline = tracker.track(video, queries)
    tracker.reset(queries)
    first, first_vis = tracker.step(video[:, :2])
    rest, rest_vis = tracker.step(video[:, 2:])
    assert [c[0].shape[1] for c in store[0].calls[1:]] == [2, 4]  # re-ran on 2, then 4 frames
    assert torch.allclose(rest, offline[0][:, 2:]) and torch.equal(rest_vis, offline[1][:, 2:])
    assert torch.allclose(first[:, :, 0], offline[0][:, :2, 0])
    # point 1's frame has not arrived during the first step: query position, not visible
    assert torch.equal(first[0, :, 1], queries[0, 1, 1:].expand(2, 2)) and not bool(first_vis[0, :, 1].any())


def test_errors_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkout_dir"):
        CoTrackerTracker(tmp_path / "co-tracker", tmp_path / "scaled_offline.pth")
    checkout = tmp_path / "co-tracker"
    checkout.mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*scaled_offline.pth"):
        CoTrackerTracker(checkout, tmp_path / "scaled_offline.pth")
    with pytest.raises(ValueError, match=r"queries must be \[B, K, 3\]"):
        CoTrackerTracker(loader=stand_in_loader([])).track(torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2))
    with pytest.raises(RuntimeError, match="before reset"):
        CoTrackerTracker(loader=stand_in_loader([])).step(torch.rand(1, 2, 3, 8, 8))


@pytest.mark.skipif(importlib.util.find_spec("cotracker") is not None, reason="cotracker is installed here")
def test_missing_cotracker_gives_install_instructions(tmp_path):
    # a checkout whose hubconf imports cotracker, as the real one does, loaded through the real torch.hub.load
    checkout = tmp_path / "co-tracker"
    checkout.mkdir()
    (checkout / "hubconf.py").write_text(
        "def cotracker3_offline(pretrained=True, **kwargs):\n"
        "    from cotracker.predictor import CoTrackerPredictor\n"
        "    return CoTrackerPredictor(checkpoint=None, window_len=60)\n"
    )
    torch.save({"w": torch.zeros(1)}, tmp_path / "scaled_offline.pth")
    tracker = CoTrackerTracker(checkout, tmp_path / "scaled_offline.pth")
    with pytest.raises(ImportError, match=r"could not import cotracker(.|\n)*pip install -e"):
        tracker.track(torch.rand(1, 2, 3, 8, 8), torch.tensor([[[0.0, 0.5, 0.5]]]))


@pytest.mark.skipif(
    importlib.util.find_spec("cotracker") is None or not os.environ.get("RLDIFF_COTRACKER_CHECKPOINT"),
    reason="real CoTracker3 needs an importable cotracker and RLDIFF_COTRACKER_CHECKOUT / RLDIFF_COTRACKER_CHECKPOINT",
)
def test_real_cotracker(make_sprite_video):
    tracker = CoTrackerTracker(os.environ["RLDIFF_COTRACKER_CHECKOUT"], os.environ["RLDIFF_COTRACKER_CHECKPOINT"])
    video, centres = make_sprite_video(size=64, seed=0, speed=5.0)
    queries = torch.cat([torch.zeros(1, 1, 1), centres[:, :1]], dim=-1)
    state = torch.get_rng_state()
    tracks, vis = tracker.track(video, queries)
    assert torch.equal(torch.get_rng_state(), state)
    assert float((tracks[0, :, 0] - centres[0]).norm(dim=-1).max()) < 0.03
    assert bool(vis[0, 0, 0])
