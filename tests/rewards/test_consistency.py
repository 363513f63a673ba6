"""TrackConsistencyReward: patches by hand, a sprite moving as asked vs frozen or reversed, streaming, masks, errors."""

from __future__ import annotations

import pytest
import torch

from rewards import TrackConsistencyReward, make_reward
from rewards.consistency import sample_patches
from rldiff.protocols import Reward
from rldiff.types import Control


def control_of(video: torch.Tensor, trajectory: torch.Tensor, visibility: torch.Tensor | None = None) -> Control:
    b, t, k, _ = trajectory.shape
    vis = torch.ones(b, t, k, dtype=torch.bool) if visibility is None else visibility
    return Control(trajectory=trajectory, visibility=vis, reference=video[:, 0], prompt=["sprite"] * b)


def test_patches_at_pixel_centres_are_crops():
    image = torch.rand(2, 3, 12, 10)
    # pixel (x=4, y=6) has its centre at ((4 + 0.5) / 10, (6 + 0.5) / 12)
    points = torch.tensor([[[4.5 / 10, 6.5 / 12]], [[2.5 / 10, 3.5 / 12]]])  # [2, 1, 2]
    patches = sample_patches(image, points, radius=2)  # [2, 1, 3, 5, 5]
    assert patches.shape == (2, 1, 3, 5, 5)
    assert torch.allclose(patches[0, 0], image[0, :, 4:9, 2:7], atol=1e-6)
    assert torch.allclose(patches[1, 0], image[1, :, 1:6, 0:5], atol=1e-6)


def test_a_sprite_moving_as_asked_beats_a_frozen_or_reversed_one(make_sprite_video):
    video, centres = make_sprite_video(frames=6)
    trajectory = centres.unsqueeze(2)  # [1, T, 1, 2]
    reward = TrackConsistencyReward(lam=2.0, radius=4)
    assert isinstance(reward, Reward)
    moving = reward.score_components(video, control_of(video, trajectory))
    frozen = reward.score_components(video[:, :1].expand_as(video).contiguous(), control_of(video, trajectory))
    reversed_ = reward.score_components(video.flip(1), control_of(video, trajectory))
    assert moving["reward"].shape == (1, 6)
    assert torch.allclose(moving["reward"], -2.0 * moving["error"])
    assert float(moving["error"][0, 0]) == 0.0  # frame 0 is the reference image
    assert float(moving["error"][:, 1:].max()) < 0.003  # sub-pixel resampling of a rigidly moving sprite only
    assert float(frozen["error"][:, 1:].min()) > 5 * float(moving["error"][:, 1:].max())
    assert float(reversed_["error"][:, 1:].mean()) > 5 * float(moving["error"][:, 1:].mean())


def test_streaming_equals_offline_and_registry(make_sprite_video):
    video, centres = make_sprite_video(frames=5, seed=3)
    control = control_of(video, centres.unsqueeze(2).repeat(1, 1, 2, 1) + torch.tensor([0.0, 0.03]))  # two tracks
    reward = make_reward("track_consistency", lam=1.5, radius=3)
    offline = reward.score_components(video, control)
    reward.reset(control)
    parts = [reward.step(video[:, :2]), reward.step(video[:, 2:])]
    for key in ("reward", "error"):
        assert torch.allclose(torch.cat([p[key] for p in parts], dim=1), offline[key], atol=1e-6), key


def test_only_tracks_visible_now_and_before_count():
    video = torch.rand(1, 3, 3, 16, 16)
    traj = torch.full((1, 3, 2, 2), 0.5)
    traj[:, :, 1] = 0.25
    vis = torch.ones(1, 3, 2, dtype=torch.bool)
    vis[0, 1, 1] = False  # track 1 hidden at frame 1: it counts at neither frame 1 nor frame 2
    vis[0, 2, 0] = False  # track 0 hidden at frame 2
    reward = TrackConsistencyReward(radius=2)
    both = reward.score_components(video, control_of(video, traj, vis))
    alone = [reward.score_components(video, control_of(video, traj[:, :, k : k + 1], vis[:, :, k : k + 1]))["error"] for k in range(2)]
    assert torch.allclose(both["error"][0, 1], alone[0][0, 1])  # only track 0 at frame 1
    assert float(both["error"][0, 2]) == 0.0  # no track counts at frame 2
    assert float(alone[0][0, 2]) == 0.0 and float(alone[0][0, 1]) > 0.0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="lam must be > 0, got 0"):
        TrackConsistencyReward(lam=0)
    with pytest.raises(ValueError, match=r"radius must be an int >= 1 \(pixels\), got 0.5"):
        TrackConsistencyReward(radius=0.5)
    video = torch.rand(1, 2, 3, 16, 16)
    control = control_of(video, torch.rand(1, 2, 1, 2))
    with pytest.raises(ValueError, match="covers 2 frames, got frame 2"):
        TrackConsistencyReward().score(torch.rand(1, 3, 3, 16, 16), control)
    with pytest.raises(ValueError, match=r"frames are \(8, 8\), the reference image \(16, 16\)"):
        TrackConsistencyReward().score(torch.rand(1, 2, 3, 8, 8), control)
