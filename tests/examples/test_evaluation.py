"""examples/sprites_eval.tracking_stats: ground truth, a frozen video and a noisy one, on held-out Sprites-Drag clips."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from sprites_eval import sprite_offset, trajectory_error, tracking_stats  # noqa: E402

from rewards.trackers import LucasKanadeTracker  # noqa: E402
from rldiff.data.sprites import SpritesDrag  # noqa: E402


def heldout(n: int = 8):
    videos, control = SpritesDrag(image_size=32, num_frames=8, split="heldout").heldout_videos()
    return videos[:n], control.index(list(range(n)))


def test_tracking_stats_tell_motion_from_a_frozen_video():
    videos, control = heldout()
    tracker = LucasKanadeTracker()
    truth, _ = tracking_stats(videos, control, tracker)
    assert truth["trajectory_error"] < 0.01 and truth["lost_fraction"] == 0.0
    # a frozen video: nothing is lost, every point stays at its start
    frozen, tracks = tracking_stats(videos[:, :1].expand_as(videos).contiguous(), control, tracker)
    shown = control.visibility[:, 1:]
    from_start = (control.trajectory - control.trajectory[:, :1]).norm(dim=-1)[:, 1:][shown].mean()
    assert frozen["lost_fraction"] == 0.0
    assert abs(frozen["position_error"] - float(from_start)) < 0.01
    assert torch.allclose(tracks, control.trajectory[:, :1].expand_as(tracks), atol=0.01)
    # noise: some points are lost and count at least 0.25, so the error exceeds the reported positions' distance
    noisy = (videos + 0.3 * torch.randn(videos.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    stats, _ = tracking_stats(noisy, control, tracker)
    assert 0.0 < stats["lost_fraction"] < 1.0
    assert stats["trajectory_error"] > stats["position_error"]
    assert trajectory_error(noisy, control, tracker)[0] == stats["trajectory_error"]


def test_sprite_offset_sees_sprites_where_they_are_drawn():
    videos, control = heldout()
    assert sprite_offset(videos, control) < 0.025  # ground truth: resampling and rotation only
    # a frozen video: every sprite stays at its start, whatever a tracker would report
    frozen = sprite_offset(videos[:, :1].expand_as(videos).contiguous(), control)
    shown = control.visibility[:, 1:]
    from_start = float((control.trajectory - control.trajectory[:, :1]).norm(dim=-1)[:, 1:][shown].mean())
    assert abs(frozen - from_start) < 0.02
