"""LogReward: the log of a positive reward, streamed like the inner one, with its components passed through."""

import math

import pytest
import torch

from rewards import LogReward, SpritesQualityReward, make_reward
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
