"""The paper's columns in examples.ar_drag.evaluation: ObjMC in pixels by hand, VideoMetrics against reference statistics, latency rows."""

from __future__ import annotations

import pytest
import torch

from examples.ar_drag.evaluation import VideoMetrics, bidirectional_stream, latency_row, objmc_px
from rldiff.data.sprites import SpritesDrag
from rldiff.metrics import Latency, blend_interpolate, measure_latency


def heldout(n: int = 4):
    videos, control = SpritesDrag(image_size=32, num_frames=8, split="heldout").heldout_videos()
    return videos[:n], control.index(list(range(n)))


def test_objmc_in_pixels_by_hand():
    _, control = heldout()
    # every tracked point 3/32 right and 4/32 down of its target on a 32 x 32 frame: 5 px away
    tracks = control.trajectory + torch.tensor([3 / 32, 4 / 32])
    assert objmc_px(tracks, control, 32, 32) == pytest.approx(5.0, abs=1e-4)
    # a 64 x 32 (H x W) frame: (3/32 * 32, 4/32 * 64) = (3, 8) px
    assert objmc_px(tracks, control, 64, 32) == pytest.approx((9 + 64) ** 0.5, abs=1e-4)


def test_video_metrics_of_the_reference_itself():
    videos, control = heldout(6)
    frames = lambda x: x.mean(dim=(2, 3))  # [N, 3] toy frame features
    clips = lambda x: x.mean(dim=(2, 3, 4))  # [N, T] toy clip features
    reference = VideoMetrics(frames, clips)
    reference.add(videos)
    metrics = VideoMetrics(frames, clips, blend_interpolate, aesthetic=lambda v: torch.full((v.shape[0],), 2.0))
    metrics.add(videos[:3], control.index([0, 1, 2]))
    metrics.add(videos[3:], control.index([3, 4, 5]))  # chunked: the same statistics as one pass
    row = metrics.row(reference.statistics())
    assert row["fid"] == pytest.approx(0.0, abs=1e-9) and row["fvd"] == pytest.approx(0.0, abs=1e-9)
    assert 0.9 < row["motion_smoothness"] <= 1.0 and row["aesthetic"] == 2.0
    assert VideoMetrics().row({}) == {}  # every column optional


def test_latency_rows_of_causal_and_whole_clip_models():
    assert latency_row(Latency(first_frame_s=0.2, fps=12.0, total_s=0.8, runs=3), 8) == {"latency_first_frame_s": 0.2, "fps": 12.0}
    # a whole-clip model yields once: its first frame comes with the last, fps = frames / total time
    videos, control = heldout(1)

    class Codec:
        def decode(self, latents):
            return latents

    stream = bidirectional_stream(lambda c, g: {"clean": videos}, Codec(), control)
    lat = measure_latency(stream, warmup=0, repeats=2)
    row = latency_row(lat, 8)
    assert row["latency_first_frame_s"] == pytest.approx(lat.total_s) and row["fps"] == pytest.approx(8 / lat.total_s)
