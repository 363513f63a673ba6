"""LucasKanadeTracker on synthetic textured-sprite videos (real OpenCV).

``python tests/rewards/test_trackers.py`` prints the LK tracking error on the test scene.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewards.points import normalized_to_pixels, pixels_to_normalized
from rewards.trackers import LucasKanadeTracker
from rldiff.protocols import PointTracker


def _queries_at(centres: torch.Tensor, t: int = 0) -> torch.Tensor:
    """``[B, T, 2]`` centres -> one query per video ``[B, 1, 3]`` at frame t."""
    return torch.cat([torch.full_like(centres[:, :1, :1], float(t)), centres[:, t : t + 1]], dim=-1)


def lk_errors(sprite_video, size: int = 32, seeds=range(6), plain: bool = False, speed: float = 2.5):
    """Max tracking error over frames per seed (normalized units) and the fraction of visible frames."""
    errors, visible = [], []
    for seed in seeds:
        video, centres = sprite_video(size=size, seed=seed, plain=plain, speed=speed, supersample=4 if size <= 64 else 1)
        tracks, vis = LucasKanadeTracker().track(video, _queries_at(centres))
        errors.append(float((tracks[0, :, 0] - centres[0]).norm(dim=-1).max()))
        visible.append(float(vis.float().mean()))
    return errors, visible


def test_lk_satisfies_point_tracker_protocol():
    assert isinstance(LucasKanadeTracker(), PointTracker)


def test_coordinate_conventions_round_trip():
    # pixel 0's centre of a 32-wide image is at x = 0.5 / 32; the image edges are 0 and 1
    xy = torch.tensor([[0.5 / 32, 1.0], [0.0, 0.5]])
    px = normalized_to_pixels(xy, height=16, width=32)
    assert torch.allclose(px, torch.tensor([[0.0, 15.5], [-0.5, 7.5]]))
    assert torch.allclose(pixels_to_normalized(px, 16, 32), xy)


@pytest.mark.parametrize("plain", [False, True])
def test_lk_follows_sprite_on_curve_at_32px(make_sprite_video, plain):
    # 2.5 px per frame along an elliptic arc; 2% of the image = 0.64 px
    errors, visible = lk_errors(make_sprite_video, size=32, seeds=range(4), plain=plain)
    assert max(errors) < 0.02, errors
    assert min(visible) == 1.0


def test_lk_follows_fast_sprite_at_256px(make_sprite_video):
    # 20 px per frame at 256 px needs the pyramid (three levels with a 21 px window)
    errors, visible = lk_errors(make_sprite_video, size=256, seeds=[0, 1], speed=20.0)
    assert max(errors) < 0.02, errors
    assert min(visible) == 1.0


def test_lk_batched_equals_single_video_tracking(make_sprite_video):
    videos, centres = zip(*(make_sprite_video(seed=s) for s in range(3)))
    video, centres = torch.cat(videos), torch.cat(centres)  # [3, T, 3, H, W], [3, T, 2]
    queries = torch.cat([_queries_at(centres), _queries_at(centres.flip(0), 2)], dim=1)  # [3, 2, 3] two points per video
    tracks, vis = LucasKanadeTracker().track(video, queries)
    assert tracks.shape == (3, 8, 2, 2) and vis.shape == (3, 8, 2) and vis.dtype == torch.bool
    for b in range(3):
        single_tracks, single_vis = LucasKanadeTracker().track(video[b : b + 1], queries[b : b + 1])
        assert torch.equal(single_tracks, tracks[b : b + 1])
        assert torch.equal(single_vis, vis[b : b + 1])


def test_lk_online_in_chunks_equals_offline(make_sprite_video):
    video, centres = make_sprite_video(seed=1)
    queries = _queries_at(centres)
    offline = LucasKanadeTracker().track(video, queries)
    tracker = LucasKanadeTracker()
    tracker.reset(queries)
    parts = [tracker.step(video[:, a:b]) for a, b in [(0, 1), (1, 4), (4, 5), (5, 8)]]
    assert torch.equal(torch.cat([p[0] for p in parts], dim=1), offline[0])
    assert torch.equal(torch.cat([p[1] for p in parts], dim=1), offline[1])


def test_lk_later_query_backward_offline_and_pending_online(make_sprite_video):
    video, centres = make_sprite_video(seed=2)
    queries = _queries_at(centres, t=3)  # the sprite's centre at frame 3
    tracks, vis = LucasKanadeTracker().track(video, queries)
    assert float((tracks[0, :, 0] - centres[0]).norm(dim=-1).max()) < 0.02  # frames 0-2 tracked backward
    assert bool(vis.all())
    tracker = LucasKanadeTracker()
    tracker.reset(queries)
    online, online_vis = tracker.step(video)
    # online, frames before the query frame report the query point, not visible
    assert torch.equal(online[0, :3, 0], centres[0, 3].expand(3, 2)) and not bool(online_vis[0, :3].any())
    assert torch.equal(online[:, 3:], tracks[:, 3:])


def test_lk_point_leaving_the_image_turns_invisible():
    # a pan over a large static texture: content moves 3 px left per frame, so a point at x = 4.5 px leaves at frame 2
    g = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(1, 3, 24, 72, generator=g), size=(48, 144), mode="bicubic").clamp(0, 1)[0]
    video = torch.stack([texture[:, 8:40, 3 * t + 40 : 3 * t + 72] for t in range(6)])[None]  # [1, 6, 3, 32, 32]
    queries = torch.tensor([[[0.0, 5.0 / 32, 0.5], [0.0, 24.0 / 32, 0.4]]])  # two points at pixel x 4.5 and 23.5
    tracks, vis = LucasKanadeTracker().track(video, queries)
    assert vis[0, :2, 0].all() and not vis[0, 2:, 0].any()
    assert vis[0, :, 1].all()
    expected = queries[0, 1, 1] - 3.0 * torch.arange(6) / 32  # x of the second point, 3 px per frame to the left
    assert torch.allclose(tracks[0, :, 1, 0], expected, atol=0.1 / 32)  # within 0.1 px on a pure pan


def test_lk_errors_name_the_culprit(make_sprite_video):
    video, centres = make_sprite_video(frames=2)
    with pytest.raises(ValueError, match=r"queries must be \[B, K, 3\]"):
        LucasKanadeTracker().track(video, centres)
    with pytest.raises(ValueError, match="NaN"):
        LucasKanadeTracker().track(video, torch.full((1, 1, 3), float("nan")))
    with pytest.raises(ValueError, match="outside the video's 2 frames"):
        LucasKanadeTracker().track(video, torch.tensor([[[5.0, 0.5, 0.5]]]))
    with pytest.raises(ValueError, match=r"video values must lie in \[0, 1\]"):
        LucasKanadeTracker().track(video * 255, _queries_at(centres))
    with pytest.raises(ValueError, match=r"video must be \[B, T, 3, H, W\]"):
        LucasKanadeTracker().track(video[0], _queries_at(centres))
    with pytest.raises(RuntimeError, match="before reset"):
        LucasKanadeTracker().step(video)
    with pytest.raises(ValueError, match="window must be an odd int"):
        LucasKanadeTracker(window=20)


if __name__ == "__main__":
    from conftest import sprite_video  # script mode: tests/rewards is on sys.path

    torch.set_num_threads(1)
    for size, plain, speed in [(32, False, 2.5), (32, True, 2.5), (32, False, 4.0), (256, False, 20.0)]:
        errors, visible = lk_errors(sprite_video, size=size, seeds=range(8), plain=plain, speed=speed)
        mean = sum(errors) / len(errors)
        print(
            f"{size}px {'plain' if plain else 'striped'} disc, {speed} px/frame, 8 scenes x 8 frames: "
            f"max error {max(errors):.4f} ({max(errors) * size:.3f} px), mean of per-scene max {mean:.4f}, visible {min(visible):.2f}"
        )
