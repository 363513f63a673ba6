"""SpritesQualityReward: high on ground truth, low on degraded or foreign frames, monotone, position-free."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from rewards.sprites import SpritesQualityReward, masked_ssd
from rldiff.data import SpritesDrag
from rldiff.protocols import Reward


@pytest.fixture(scope="module")
def world() -> SpritesDrag:
    return SpritesDrag(image_size=32, num_frames=8)


@pytest.fixture(scope="module")
def data(world):
    scene = world.scenes(16, torch.Generator().manual_seed(3))
    video = world.render(scene)
    return scene, video, world.control(scene, video)


@pytest.fixture(scope="module")
def reward() -> SpritesQualityReward:
    return SpritesQualityReward()


def gaussian_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV Gaussian blur of every frame of ``[B, T, 3, H, W]``."""
    if sigma == 0:
        return video
    frames = video.permute(0, 1, 3, 4, 2).numpy()  # [B, T, H, W, 3]
    out = np.stack([np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in v]) for v in frames])
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()


def test_protocol_and_components(reward, data):
    _, video, control = data
    assert isinstance(reward, Reward)
    reward.reset(control)
    out = reward.step(video[:, :3])
    assert set(out) == {"reward", "background", "sprite", "sharpness"}
    for value in out.values():
        assert value.shape == (16, 3) and float(value.min()) >= 0.0 and float(value.max()) <= 1.0
    # the total is the product of the components (weights 1)
    assert torch.allclose(out["reward"], out["background"] * out["sprite"] * out["sharpness"])


def test_streaming_equals_offline(reward, data):
    _, video, control = data
    offline = reward.score(video, control)  # [B, T]
    reward.reset(control)
    chunks = [reward.step(video[:, a:b])["reward"] for a, b in ((0, 1), (1, 4), (4, 8))]
    assert torch.allclose(torch.cat(chunks, dim=1), offline)


def test_ground_truth_scores_high(reward, data):
    _, video, control = data
    score = reward.score(video, control)  # [B, T]
    assert float(score[:, 0].min()) > 0.99  # frame 0 is the reference itself
    assert float(score.mean()) > 0.95 and float(score.min()) > 0.8


def test_degraded_or_foreign_frames_score_low(reward, data, world):
    scene, video, control = data
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(video.shape, generator=gen)
    other = world.render(world.scenes(16, torch.Generator().manual_seed(4)))
    cases = {
        "noise 0.1": ((video + 0.1 * noise).clamp(0, 1), 0.5),
        "noise 0.3": ((video + 0.3 * noise).clamp(0, 1), 0.05),
        "blur sigma 2": (gaussian_blur(video, 2.0), 0.35),
        "constant grey": (torch.full_like(video, 0.5), 0.05),
        "colour shift": ((video + torch.tensor([0.15, 0.0, -0.15])[:, None, None]).clamp(0, 1), 0.1),
        "sprites removed": (world.render(replace(scene, present=torch.zeros_like(scene.present))), 0.1),
        "other scene, shuffled": (other[:, torch.randperm(8, generator=gen)], 0.1),
    }
    for name, (frames, ceiling) in cases.items():
        assert float(reward.score(frames, control).mean()) < ceiling, name


def test_monotone_under_blur_and_noise(reward, data):
    _, video, control = data
    blurred = torch.stack([reward.score(gaussian_blur(video, s), control).mean(1) for s in (0.0, 0.5, 1.0, 2.0)])  # [4, B]
    assert bool((blurred[1:] <= blurred[:-1] + 1e-4).all())  # every video, every step
    assert bool((blurred.mean(1)[1:] < blurred.mean(1)[:-1] - 0.05).all())  # and clearly on average
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(1))
    noisy = torch.stack([reward.score((video + s * noise).clamp(0, 1), control).mean(1) for s in (0.0, 0.05, 0.1, 0.2)])
    assert bool((noisy[1:] <= noisy[:-1] + 1e-4).all())
    assert bool((noisy.mean(1)[1:] < noisy.mean(1)[:-1] - 0.05).all())


def test_keeps_ranking_far_from_the_reference(reward, data):
    # a few-step student sits around the "noise 0.2-0.3" error level; a clipped ramp scored all of these 0
    _, video, control = data
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(2))
    scores = torch.stack([reward.score((video + s * noise).clamp(0, 1), control).mean(1) for s in (0.2, 0.3, 0.45)])  # [3, B]
    assert bool((scores > 0).all())
    assert bool((scores[1:] < scores[:-1]).all())  # strictly lower with more noise, every video


def test_does_not_depend_on_where_the_sprite_is(reward):
    world = SpritesDrag(max_sprites=1)  # one sprite: moving it cannot make it hide behind another
    scene = world.scenes(12, torch.Generator().manual_seed(5))
    video = world.render(scene)
    control = world.control(scene, video)
    shift = torch.where(scene.centers.mean(1, keepdim=True) > 0.5, -0.15, 0.15)  # towards the middle: stays inside
    moved = world.render(scene.with_centers(scene.centers + shift))
    a, b = reward.score(video, control), reward.score(moved, control)
    assert float(b[:, 1:].mean()) > 0.95
    assert float((a - b).abs().mean()) < 0.03


def test_masked_ssd_matches_opencv():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 3, 20, 24, generator=gen)  # [B, N, C, H, W]
    template = torch.rand(1, 1, 3, 7, 7, generator=gen)  # [B, K, C, D, D]
    weights = torch.rand(7, 7, generator=gen)
    ours = masked_ssd(image, template, weights)[0, 0, 0]  # [H', W']
    # OpenCV's TM_SQDIFF with a mask M computes sum (M * (T - I))^2, so M = sqrt(w)
    img = image[0, 0].permute(1, 2, 0).numpy().copy()
    tpl = template[0, 0].permute(1, 2, 0).numpy().copy()
    mask = np.repeat(weights.sqrt().numpy()[..., None], 3, axis=2).copy()
    theirs = cv2.matchTemplate(img, tpl, cv2.TM_SQDIFF, mask=mask)
    assert ours.shape == theirs.shape == (14, 18)
    assert np.allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-3)


def test_bad_arguments_and_sizes(reward, data):
    _, video, control = data
    with pytest.raises(ValueError, match="sprite_tolerance"):
        SpritesQualityReward(sprite_tolerance=0.0)
    with pytest.raises(ValueError, match="background_quantile"):
        SpritesQualityReward(background_quantile=1.0)
    reward.reset(control)
    with pytest.raises(ValueError, match="frames"):
        reward.step(torch.zeros(16, 1, 3, 16, 16))


def test_locate_finds_each_sprite_where_it_is_drawn(data, reward):
    scene, video, control = data
    reward.reset(control)
    found = reward.locate(video)  # [B, T, K, 2]
    assert found.shape == (*video.shape[:2], control.trajectory.shape[2], 2)
    err = (found - control.trajectory).norm(dim=-1)[control.visibility]
    assert float(err.median()) < 0.02  # within about half a pixel of the centre (32 px frames)
    # shift every frame 3 pixels right and 2 down: the found positions move with it, to a quarter pixel
    moved = torch.roll(video, shifts=(2, 3), dims=(-2, -1))
    shift = (found - reward.locate(moved)).neg()
    inside = control.visibility & (control.trajectory > 0.25).all(-1) & (control.trajectory < 0.75).all(-1)
    assert torch.allclose(shift[inside], torch.tensor([3 / 32, 2 / 32]).expand_as(shift[inside]), atol=0.5 / 64 + 1e-6)


def test_locate_needs_reset_and_frames_of_the_reference_size(data):
    _, video, control = data
    fresh = SpritesQualityReward()
    with pytest.raises(RuntimeError, match="before reset"):
        fresh.locate(video)
    fresh.reset(control)
    with pytest.raises(ValueError, match=r"frames must be \(32, 32\) like the reference, got \(16, 16\)"):
        fresh.locate(video[..., :16, :16])
