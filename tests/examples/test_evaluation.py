"""examples.ar_drag.evaluation: tracking figures of ground truth, a frozen video and a noisy one; the pooled evaluation; the table."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from examples.ar_drag.evaluation import evaluate, quality_warning, results_table, sprite_offset, tracking_stats
from policies.codecs import PixelCodec
from rewards.trackers import LucasKanadeTracker
from rldiff.data.sprites import SpritesDrag


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


def test_sprite_offset_sees_sprites_where_they_are_drawn():
    videos, control = heldout()
    assert sprite_offset(videos, control) < 0.025  # ground truth: resampling and rotation only
    # a frozen video: every sprite stays at its start, whatever a tracker would report
    frozen = sprite_offset(videos[:, :1].expand_as(videos).contiguous(), control)
    shown = control.visibility[:, 1:]
    from_start = float((control.trajectory - control.trajectory[:, :1]).norm(dim=-1)[:, 1:][shown].mean())
    assert abs(frozen - from_start) < 0.02


def replay_sampler(videos, control, codec, calls: list):
    """A sampler whose "rollouts" are the encoded ground-truth videos of the controls asked for (told apart by their first point)."""
    latents = codec.encode(videos)  # [B, F, C, h, w]
    first_x = control.trajectory[:, 0, 0, 0]  # [B]
    assert len(set(first_x.tolist())) == control.batch_size

    def sample(part, generator):
        rows = [int((first_x - x).abs().argmin()) for x in part.trajectory[:, 0, 0, 0]]
        calls.append(rows)
        n = len(rows)
        reward = torch.full((n, latents.shape[1]), float(n))  # [b, F]
        return TensorDict({"clean": latents[rows], "reward": reward, "reward_terms": {"quality": reward / 2}}, batch_size=[n])

    return sample


def test_evaluate_pools_chunks_and_noise_draws_in_control_order():
    """5 held-out controls in chunks of 2, 2 draws: the pooled figures are those of the 5 videos scored at once."""
    videos, control = heldout(5)
    codec, calls = PixelCodec(4), []
    row, (video, tracks) = evaluate(replay_sampler(videos, control, codec, calls), codec, control, LucasKanadeTracker(), draws=2, chunk=2, sprites=True)
    assert calls == [[0, 1], [2, 3], [4]] * 2  # chunks of 2 rows, once per draw
    truth, truth_tracks = tracking_stats(codec.decode(codec.encode(videos)).clamp(0, 1), control, LucasKanadeTracker())
    for key in ("trajectory_error", "lost_fraction", "position_error"):
        assert row[key] == pytest.approx(truth[key], rel=1e-5), key
    assert row["trajectory_error"] < 0.02  # ground truth is tracked closely: a row/control mix-up would not be
    assert row["sprite_offset"] == pytest.approx(sprite_offset(videos, control), abs=1e-4)
    # the return of a video is its reward summed over 8 frames: chunks of 2 rows give 2 * 8, the last chunk 1 * 8
    assert row["reward"] == pytest.approx((2 * 2 * 8 * 2 + 1 * 8) / 5)
    assert row["quality"] == pytest.approx((2 * 2 * 1.0 + 0.5) / 5)  # a term's mean is per frame: 1.0 in 2-row chunks, 0.5 in the 1-row one
    assert video.shape[0] == 5 and torch.allclose(tracks, truth_tracks)  # the first draw, every control


def test_evaluate_names_an_empty_budget():
    videos, control = heldout(2)
    with pytest.raises(ValueError, match=r"evaluate: needs at least one control and one draw, got 2 controls and draws=0"):
        evaluate(replay_sampler(videos, control, PixelCodec(4), []), PixelCodec(4), control, LucasKanadeTracker(), draws=0)


def test_results_table_keeps_shared_metrics_in_order_and_computes_the_change():
    table = results_table({"before RL": {"a": 2.0, "b": 1.0, "only_before": 3.0}, "after RL": {"b": 1.5, "a": 1.0}}, change=True)
    assert table.splitlines() == [
        "| metric | before RL | after RL | change |",
        "|---|---|---|---|",
        "| a | 2.0000 | 1.0000 | -50.0% |",  # (1 - 2) / 2
        "| b | 1.0000 | 1.5000 | +50.0% |",
    ]
    three = results_table({"x": {"m": 1.0}, "y": {"m": 2.0}, "z": {"m": 3.0}})
    assert three.splitlines()[0] == "| metric | x | y | z |" and three.splitlines()[2] == "| m | 1.0000 | 2.0000 | 3.0000 |"


def test_quality_warning_flags_a_collapse_only():
    # the Sprites figure under quality_log: the log is negative, quality/value is the figure
    collapse = quality_warning({"quality": -2.9, "quality/value": 0.065}, {"quality": -9.0, "quality/value": 0.0001}, 0.5)
    assert collapse is not None and "quality/value fell by 100%" in collapse and "videos_after.gif" in collapse
    assert quality_warning({"quality": 0.065}, {"quality": 0.05}, 0.5) is None  # -23%: no warning
    assert "aesthetic fell by 60%" in quality_warning({"aesthetic": 5.0}, {"aesthetic": 2.0}, 0.5)
    assert quality_warning({"trajectory_error": 0.2}, {"trajectory_error": 0.1}, 0.5) is None  # no quality figure
