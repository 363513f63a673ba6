"""LogReward and IncrementReward: transforms of another reward, streamed like the inner one, with its components passed through."""

import math

import pytest
import torch

from rewards import IncrementReward, LogReward, LucasKanadeTracker, SpritesQualityReward, TrajectoryHingeReward, make_reward
from rldiff.data import SpritesDrag
from rldiff.protocols import Reward


@pytest.fixture(scope="module")
def data():
    world = SpritesDrag(image_size=32, num_frames=4)
    scene = world.scenes(4, torch.Generator().manual_seed(0))
    video = world.render(scene)
    return video, world.control(scene, video)


def test_log_of_the_sprites_quality_streamed_and_offline(data):
    video, control = data
    noisy = (video + 0.3 * torch.randn(video.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    inner, wrapped = SpritesQualityReward(), LogReward(SpritesQualityReward(), floor=1e-6)
    assert isinstance(wrapped, Reward)
    q = inner.score_components(noisy, control)  # [B, T] each
    out = wrapped.score_components(noisy, control)
    torch.testing.assert_close(out["reward"], torch.log(q["reward"]))
    # log of the product = sum of the logs of its factors
    torch.testing.assert_close(out["reward"], torch.log(q["background"]) + torch.log(q["sprite"]) + torch.log(q["sharpness"]))
    assert torch.equal(out["value"], q["reward"]) and torch.equal(out["sprite"], q["sprite"])
    wrapped.reset(control)
    chunks = [wrapped.step(noisy[:, :1])["reward"], wrapped.step(noisy[:, 1:])["reward"]]
    torch.testing.assert_close(torch.cat(chunks, dim=1), out["reward"])


def test_floor_and_bad_input(data):
    video, control = data
    grey = torch.full_like(video, 0.5)  # sharpness 0 -> quality 0 -> log clamps at log(floor)
    out = LogReward(SpritesQualityReward(), floor=1e-3).score(grey, control)
    assert torch.allclose(out, torch.full_like(out, math.log(1e-3)))
    with pytest.raises(ValueError, match="floor must be > 0, got 0"):
        LogReward(SpritesQualityReward(), floor=0.0)
    with pytest.raises(TypeError, match="must be a Reward"):
        LogReward(object())
    assert isinstance(make_reward("log", reward=SpritesQualityReward()), LogReward)


def test_increments_of_the_lk_hinge_streamed_and_offline(data):
    video, control = data
    shaken = torch.roll(video, shifts=(0, 2), dims=(-2, -1))  # the sprites off their targets from frame 0 on
    shaken[:, 0] = video[:, 0]
    hinge = TrajectoryHingeReward(LucasKanadeTracker(), lam=20.0, alpha=0.05, per_point=True)
    inner = hinge.score(shaken, control)  # [B, T]
    wrapped = IncrementReward(TrajectoryHingeReward(LucasKanadeTracker(), lam=20.0, alpha=0.05, per_point=True))
    assert isinstance(wrapped, Reward)
    out = wrapped.score_components(shaken, control)
    torch.testing.assert_close(out["value"], inner)
    torch.testing.assert_close(out["reward"][:, 0], inner[:, 0])  # r_{-1} = 0
    torch.testing.assert_close(out["reward"][:, 1:], inner[:, 1:] - inner[:, :-1])
    torch.testing.assert_close(out["reward"].sum(1), inner[:, -1])  # the increments telescope
    assert bool((out["reward"][:, 1:] != 0).any())  # the shift moved the tracks: the test sees real increments
    # streamed one frame at a time: the last value carries over between calls, and reset forgets it
    for _ in range(2):
        wrapped.reset(control)
        chunks = [wrapped.step(shaken[:, t : t + 1])["reward"] for t in range(shaken.shape[1])]
        torch.testing.assert_close(torch.cat(chunks, dim=1), out["reward"])


def test_increments_pass_components_and_reject_non_rewards(data):
    video, control = data
    q = SpritesQualityReward().score_components(video, control)
    out = IncrementReward(SpritesQualityReward()).score_components(video, control)
    assert torch.equal(out["sprite"], q["sprite"]) and torch.equal(out["value"], q["reward"])
    with pytest.raises(TypeError, match="IncrementReward: reward must be a Reward"):
        IncrementReward(object())
    assert isinstance(make_reward("increment", reward=SpritesQualityReward()), IncrementReward)
