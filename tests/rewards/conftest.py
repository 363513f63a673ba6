"""Shared pieces of the reward tests: a synthetic textured-sprite scene, single-threaded torch.

Torch runs single-threaded in these tests: the tensors are tiny and the 2 CI cores are shared.
"""

import math

import pytest
import torch
import torch.nn.functional as F


def sprite_video(size: int = 32, frames: int = 8, seed: int = 0, plain: bool = False, speed: float = 2.5, supersample: int = 4):
    """A striped (or plain) disc of radius ``5 * size / 32`` on a textured static background, moving along a curve.

    Returns ``video [1, T, 3, size, size]`` in [0, 1] and the true centres ``[1, T, 2]`` normalized.
    Rendered at ``supersample`` x the size and area-averaged (anti-aliased, sub-pixel positions);
    ``speed`` is in pixels per frame at ``size``.
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(4, generator=g)
    s = size * supersample
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s  # normalized pixel centres
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # [S, S]
    background = torch.stack([
        0.35 + 0.15 * torch.sin(2 * math.pi * (3 + u[0]) * xx + 6 * u[1]) + 0.05 * torch.sin(60 * xx + 40 * yy),
        0.40 + 0.15 * torch.cos(2 * math.pi * (2 + u[2]) * yy + 6 * u[3]) + 0.05 * torch.cos(50 * yy - 30 * xx),
        0.45 + 0.10 * torch.sin(4 * math.pi * (xx + yy)),
    ])  # fmt: skip  [3, S, S]
    radius, arc = 5.0 / 32.0, 0.22  # sprite radius and path radius, normalized
    angle = 2 * math.pi * float(u[0]) + speed / size / arc * torch.arange(frames, dtype=torch.float32)  # [T]
    centres = torch.stack([0.5 + arc * angle.cos(), 0.5 + 0.7 * arc * angle.sin()], dim=-1)  # [T, 2] an elliptic arc
    red, yellow = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1), torch.tensor([0.95, 0.9, 0.2]).view(3, 1, 1)
    out = []
    for cx, cy in centres.tolist():
        dx, dy = (xx - cx) / radius, (yy - cy) / radius  # sprite coordinates
        stripes = 0.5 + 0.5 * torch.sin(3 * math.pi * dx) * torch.cos(2 * math.pi * dy)  # texture moves with the sprite
        sprite = red if plain else red * (1 - stripes) + yellow * stripes  # [3, S, S]
        inside = (dx**2 + dy**2 <= 1.0).float()
        out.append(F.avg_pool2d((background * (1 - inside) + sprite * inside)[None], supersample)[0])
    return torch.stack(out)[None].clamp(0, 1), centres[None]



@pytest.fixture
def make_sprite_video():
    """The scene builder :func:`sprite_video` (a fixture so test modules need not import conftest)."""
    return sprite_video



