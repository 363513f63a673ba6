"""Sprites-Drag: reproducibility, shapes, smooth in-frame tracks that match the rendered sprites, splits."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rldiff.data import SpriteScene, SpritesDrag, render
from rldiff.data.scene import HELDOUT_SEED, TRAIN_SEEDS
from rldiff.data.textures import BACKGROUNDS, PATTERNS, SHAPES
from rldiff.protocols import ControlSource
from rldiff.types import Control


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def world() -> SpritesDrag:
    return SpritesDrag(image_size=32, num_frames=8, min_sprites=1, max_sprites=2)


@pytest.fixture(scope="module")
def many_scenes(world) -> SpriteScene:
    return world.scenes(400, _gen(11))


def test_same_seed_same_batch_other_seed_differs(world):
    v1, c1 = world.sample_videos(6, _gen(0))
    v2, c2 = world.sample_videos(6, _gen(0))
    v3, c3 = world.sample_videos(6, _gen(1))
    assert torch.equal(v1, v2) and torch.equal(c1.trajectory, c2.trajectory) and torch.equal(c1.visibility, c2.visibility)
    assert torch.equal(c1.reference, c2.reference) and c1.prompt == c2.prompt
    assert not torch.equal(v1, v3) and not torch.equal(c1.trajectory, c3.trajectory)
    # sample() is the control half of sample_videos() for the same generator state
    assert torch.equal(world.sample(6, _gen(0)).trajectory, c1.trajectory)


def test_shapes_ranges_and_control(world):
    assert isinstance(world, ControlSource)
    video, control = world.sample_videos(5, _gen(2))
    assert video.shape == (5, 8, 3, 32, 32) and video.dtype == torch.float32
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0
    assert isinstance(control, Control)
    assert control.trajectory.shape == (5, 8, 2, 2)  # K = max_sprites, padded
    assert control.visibility.shape == (5, 8, 2) and control.visibility.dtype == torch.bool
    assert torch.equal(control.reference, video[:, 0])  # the reference is the first frame
    Control(**{f: getattr(control, f) for f in ("trajectory", "visibility", "reference", "prompt")})  # validates again
    assert all(isinstance(p, str) and "background" in p for p in control.prompt)


def test_sprite_counts_padding_and_captions(many_scenes):
    count = many_scenes.present.sum(dim=1)  # [B]
    assert int(count.min()) == 1 and int(count.max()) == 2  # both counts occur among 400 draws
    vis = many_scenes.visibility  # [B, T, K]
    assert not bool(vis[~many_scenes.present[:, None, :].expand_as(vis)].any())  # absent slots are invisible
    for b in range(20):
        caption = many_scenes.captions[b]
        assert caption.count(" moves ") == int(count[b])
        assert BACKGROUNDS[int(many_scenes.background[b])] in caption
        for k in range(int(count[b])):
            assert SHAPES[int(many_scenes.shape[b, k])] in caption
    # every family of background, shape and pattern is drawn
    assert set(many_scenes.background.tolist()) == set(range(len(BACKGROUNDS)))
    present = many_scenes.present
    assert set(many_scenes.shape[present].tolist()) == set(range(len(SHAPES)))
    assert set(many_scenes.pattern[present].tolist()) == set(range(len(PATTERNS)))


def test_tracks_inside_frame_and_smooth(many_scenes):
    c, present, radius = many_scenes.centers, many_scenes.present, many_scenes.radius  # [B, T, K, 2], [B, K], [B, K]
    r = radius[:, None, :, None].expand_as(c)
    on = present[:, None, :, None].expand_as(c)
    # the whole sprite stays inside the frame (the placement keeps a margin of 0.02)
    assert bool((c[on] >= r[on] + 0.02 - 1e-6).all()) and bool((c[on] <= 1 - r[on] - 0.02 + 1e-6).all())
    assert bool(many_scenes.visibility[present[:, None, :].expand(-1, c.shape[1], -1)].all())
    step = (c[:, 1:] - c[:, :-1]).norm(dim=-1)  # [B, T-1, K]
    accel = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).norm(dim=-1)  # [B, T-2, K]
    step, accel = step.transpose(1, 2)[present], accel.transpose(1, 2)[present]  # [S, T-1], [S, T-2]
    # worst case by hand (an arc): |p''(u)| <= L |sweep| s'^2 + L s'' <= 0.4 * 0.9 pi * 4 + 0.4 * 2 = 5.3 per unit u^2,
    # i.e. 5.3 / (T-1)^2 = 0.11 per frame^2 at T = 8; waves and Bezier curves stay below it. 0.15 leaves margin.
    assert float(accel.max()) < 0.15
    # smooth relative to the motion: the velocity changes much less than it is (white jitter would give ~2x)
    assert float(accel.mean()) < 0.5 * float(step.mean())
    assert float(step.mean()) > 0.02  # and the sprites do move (0.15-0.4 of the frame over 7 steps: ~0.04)


def _symmetric_scene(world: SpritesDrag, shape: int) -> SpriteScene:
    """One radially symmetric sprite (dotted pattern) over a flat background: its colour centroid is its centre."""
    scene = world.scenes_at(list(range(4)))
    flat = scene.bg_colors[:, :1].expand(-1, 2, -1)  # both background colours equal -> a flat background
    return replace(
        scene,
        bg_colors=flat.clone(),
        present=torch.tensor([[True, False]] * 4),
        shape=torch.full_like(scene.shape, shape),
        pattern=torch.full_like(scene.pattern, PATTERNS.index("dotted")),
    )


@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("size", [32, 64])
def test_rendered_sprite_centroid_matches_track(world, shape, size):
    scene = _symmetric_scene(world, shape)
    video = render(scene, size)  # [B, T, 3, S, S]
    weight = (video - scene.bg_colors[:, None, 0, :, None, None]).abs().sum(dim=2)  # [B, T, S, S], zero off the sprite
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres, normalized
    mass = weight.sum(dim=(-2, -1))  # [B, T]
    cx = (weight * coords).sum(dim=(-2, -1)) / mass  # [B, T]
    cy = (weight * coords[:, None]).sum(dim=(-2, -1)) / mass
    centroid = torch.stack([cx, cy], dim=-1)  # [B, T, 2]
    err_px = (centroid - scene.centers[:, :, 0]).norm(dim=-1) * size
    assert float(err_px.max()) < 0.25  # a symmetric anti-aliased sprite: well under a pixel


def test_render_at_any_size_agrees(world):
    scene = world.scenes_at([3, 4, 5])
    small, large = render(scene, 32), render(scene, 64)
    pooled = F.avg_pool2d(large.flatten(0, 1), 2).reshape(small.shape)  # 64 -> 32 by 2x2 box filter
    assert float((pooled - small).abs().mean()) < 0.03  # same picture up to anti-aliasing differences
    assert large.shape == (3, 8, 3, 64, 64)


def test_with_centers_rerenders_the_given_trajectory(world):
    scene = world.scenes_at([7])
    moved = scene.with_centers(scene.centers.flip(1))  # the same motion backwards
    assert torch.equal(render(moved, 32), render(scene, 32).flip(1))  # static background: frames swap exactly
    assert int(moved.seeds[0]) == -1 and moved.captions == scene.captions


def test_heldout_split_is_fixed_and_disjoint_from_train(world):
    held = SpritesDrag(split="heldout", num_heldout=6)
    assert len(held) == 6 and len(world) == TRAIN_SEEDS
    v1, c1 = held.heldout_videos()
    v2, c2 = SpritesDrag(split="heldout", num_heldout=6).heldout_videos()
    assert torch.equal(v1, v2) and c1.prompt == c2.prompt  # deterministic across instances
    vi, ci = held.item(4)
    assert torch.equal(vi[0], v1[4]) and ci.prompt == [c1.prompt[4]]
    # a train source of the same world exposes the same held-out list
    assert torch.equal(SpritesDrag(num_heldout=6).heldout_controls().trajectory, c1.trajectory)
    # seeds: train in [0, 2^62), held-out from 2^62, so no scene is shared by construction ...
    train = world.scenes(200, _gen(5))
    assert int(train.seeds.max()) < HELDOUT_SEED <= int(held.heldout_scenes().seeds.min())
    # ... and indeed no held-out trajectory appears among train draws
    ht, tt = c1.trajectory[:, :, 0].flatten(1), train.centers[:, :, 0].flatten(1)  # [6, 2T], [200, 2T]
    assert float(torch.cdist(ht, tt).min()) > 1e-3
    # sampling the held-out split draws from its list only
    drawn = held.sample(5, _gen(0)).trajectory  # [5, T, K, 2]
    for row in drawn:
        assert any(torch.equal(row, ref) for ref in c1.trajectory)


def test_batch_of_64_renders(world):
    # sizing only (no timing): the CPU training batch of 64 videos x 8 frames at 32x32
    video, control = world.sample_videos(64, _gen(9))
    assert video.shape == (64, 8, 3, 32, 32) and control.batch_size == 64


def test_bad_arguments_name_themselves(world):
    with pytest.raises(ValueError, match="split"):
        SpritesDrag(split="test")
    with pytest.raises(ValueError, match="min_sprites"):
        SpritesDrag(min_sprites=3, max_sprites=2)
    with pytest.raises(ValueError, match="batch_size"):
        world.scenes(0)
    with pytest.raises(IndexError, match="heldout"):
        SpritesDrag(split="heldout", num_heldout=4).item(4)
    with pytest.raises(ValueError, match="centers"):
        world.scenes_at([0]).with_centers(torch.zeros(1, 8, 2))
