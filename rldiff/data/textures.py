"""Colours and anti-aliased procedural textures of the Sprites-Drag world (torch only).

Coordinates are normalized: pixel ``(i, j)`` of an ``S x S`` image covers
``[j/S, (j+1)/S] x [i/S, (i+1)/S]`` and its centre is ``((j+0.5)/S, (i+0.5)/S)``
(x right, y down). Edges are anti-aliased with a one-pixel ramp: a shape's
coverage of a pixel is ``clamp(0.5 - d, 0, 1)`` with ``d`` the signed distance
to its edge in pixels, so textures render alike at any image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BACKGROUNDS",
    "PATTERNS",
    "SHAPES",
    "background_image",
    "color_name",
    "coverage",
    "hsv_to_rgb",
    "pixel_centers",
    "soft_wave",
    "sprite_layer",
]

BACKGROUNDS = ("smooth", "striped", "checkered", "spotted")
SHAPES = ("disc", "square", "ring")
PATTERNS = ("shaded", "striped", "checkered", "dotted")

_HUE_NAMES = ((0.04, "red"), (0.11, "orange"), (0.19, "yellow"), (0.45, "green"), (0.54, "cyan"),
              (0.70, "blue"), (0.83, "purple"), (0.96, "pink"), (1.01, "red"))  # fmt: skip


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) -> RGB ``[..., 3]`` in [0, 1]."""
    h, s, v = np.broadcast_arrays(np.asarray(h, float), np.asarray(s, float), np.asarray(v, float))
    k = (np.array([5.0, 3.0, 1.0]) + (h[..., None] % 1.0) * 6.0) % 6.0  # [..., 3]
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def color_name(hue: float) -> str:
    """A plain-English name of a saturated colour of hue ``hue`` (wraps at 1)."""
    hue = hue % 1.0
    return next(name for bound, name in _HUE_NAMES if hue < bound)


def pixel_centers(image_size: int) -> tuple[Tensor, Tensor]:
    """``(yy, xx)``, each ``[H, W]``: normalized pixel-centre coordinates of an ``image_size``-pixel square."""
    c = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size  # [H]
    yy, xx = torch.meshgrid(c, c, indexing="ij")  # [H, W]
    return yy, xx


def coverage(distance_px: Tensor) -> Tensor:
    """Pixel coverage of a shape from the signed distance to its edge in pixels (negative inside)."""
    return (0.5 - distance_px).clamp(0.0, 1.0)


def soft_wave(phase: Tensor, period_px: Tensor | float) -> Tensor:
    """Anti-aliased square wave in [0, 1]: ``clamp(0.5 + sin(phase) * P / (2 pi))``.

    The slope at a crossing is one unit per pixel for a period of ``P`` pixels,
    so edges get the same one-pixel ramp as shapes; a period under pi pixels
    never saturates and degrades gracefully to a low-contrast sinusoid.
    """
    return (0.5 + torch.sin(phase) * (period_px / (2 * math.pi))).clamp(0.0, 1.0)


# --- backgrounds: each family maps its parameters to a mixing field in [0, 1] ---------------------


def _smooth(field: Tensor, image_size: int) -> Tensor:
    """Bicubic upsampling of a coarse random grid ``[B, G, G]`` -> ``[B, H, W]``."""
    up = torch.nn.functional.interpolate(field[:, None], size=(image_size, image_size), mode="bicubic", align_corners=False)
    return up[:, 0].clamp(0.0, 1.0)  # [B, H, W]


def _stripes(period: Tensor, angle: Tensor, phase: Tensor, image_size: int) -> Tensor:
    """Straight stripes of ``period`` (normalized) across direction ``angle`` -> ``[B, H, W]``."""
    yy, xx = pixel_centers(image_size)
    a, p = angle[:, None, None], period[:, None, None]  # [B, 1, 1]
    proj = xx * a.cos() + yy * a.sin()  # [B, H, W]
    return soft_wave(2 * math.pi * proj / p + phase[:, 0, None, None], p * image_size)


def _checkers(period: Tensor, angle: Tensor, phase: Tensor, image_size: int) -> Tensor:
    """A rotated checkerboard of cell ``period / 2`` -> ``[B, H, W]``."""
    yy, xx = pixel_centers(image_size)
    a, p = angle[:, None, None], period[:, None, None]  # [B, 1, 1]
    u = xx * a.cos() + yy * a.sin()  # [B, H, W]
    v = -xx * a.sin() + yy * a.cos()
    prod = torch.sin(2 * math.pi * u / p + phase[:, 0, None, None]) * torch.sin(2 * math.pi * v / p + phase[:, 1, None, None])
    return (0.5 + prod * (p * image_size / (2 * math.pi))).clamp(0.0, 1.0)


def _spots(blobs: Tensor, image_size: int) -> Tensor:
    """Union of soft discs ``blobs [B, J, 3]`` = (x, y, radius) -> ``[B, H, W]``."""
    yy, xx = pixel_centers(image_size)
    bx, by, br = (blobs[..., i, None, None] for i in range(3))  # [B, J, 1, 1]
    dist = torch.sqrt((xx - bx) ** 2 + (yy - by) ** 2)  # [B, J, H, W]
    return coverage((dist - br) * image_size).amax(dim=1)  # [B, H, W]


def background_image(
    family: Tensor,
    colors: Tensor,
    period: Tensor,
    angle: Tensor,
    phase: Tensor,
    field: Tensor,
    blobs: Tensor,
    image_size: int,
) -> Tensor:
    """Static backgrounds ``[B, 3, H, W]``: ``colors[:, 0] + (colors[:, 1] - colors[:, 0]) * texture``.

    ``family [B]`` indexes BACKGROUNDS; ``colors [B, 2, 3]``; ``period, angle [B]``
    (stripes, checkers); ``phase [B, 2]``; ``field [B, G, G]`` (smooth);
    ``blobs [B, J, 3]`` (spotted). Each row uses only its family's parameters.
    """
    b = family.shape[0]
    texture = torch.zeros(b, image_size, image_size, dtype=torch.float32)  # [B, H, W]: float32 whatever the default dtype
    for index, name in enumerate(BACKGROUNDS):
        rows = (family == index).nonzero().flatten()
        if rows.numel() == 0:
            continue
        if name == "smooth":
            part = _smooth(field[rows], image_size)
        elif name == "striped":
            part = _stripes(period[rows], angle[rows], phase[rows], image_size)
        elif name == "checkered":
            part = _checkers(period[rows], angle[rows], phase[rows], image_size)
        else:
            part = _spots(blobs[rows], image_size)
        texture[rows] = part
    a, d = colors[:, 0, :, None, None], (colors[:, 1] - colors[:, 0])[:, :, None, None]  # [B, 3, 1, 1]
    return (a + d * texture[:, None]).clamp(0.0, 1.0)  # [B, 3, H, W]


# --- sprites: a shape (signed distance) filled with a two-colour pattern ---------------------------


def _shape_distance(u: Tensor, v: Tensor, shape: Tensor) -> Tensor:
    """Signed distance (radius units) to the edge of each sprite's shape; ``shape`` broadcasts to ``u``."""
    radial = torch.sqrt(u * u + v * v + 1e-12)
    square = torch.maximum(u.abs(), v.abs()) - 0.85  # half side 0.85 r: about the disc's area
    return torch.where(shape == SHAPES.index("square"), square, radial - 1.0)  # a ring's outline is the disc's


def _fill(u: Tensor, v: Tensor, pattern: Tensor, shape: Tensor, period: Tensor, r_px: Tensor) -> Tensor:
    """Mixing field in [0, 1] between a sprite's two colours, from local coordinates in radius units."""
    radial = torch.sqrt(u * u + v * v + 1e-12)
    # shaded: a sphere-like highlight up-left, so the gradient turns all the way round (trackers need that)
    shaded = (0.6 * torch.sqrt((u + 0.35) ** 2 + (v + 0.35) ** 2)).clamp(0.0, 1.0)
    striped = soft_wave(2 * math.pi * u / period, period * r_px)
    cell = (torch.sin(2 * math.pi * u / period) * torch.sin(2 * math.pi * v / period))
    checkered = (0.5 + cell * (period * r_px / (2 * math.pi))).clamp(0.0, 1.0)
    dotted = coverage((radial - 0.45) * r_px)
    q = torch.where(pattern == 0, shaded, torch.where(pattern == 1, striped, torch.where(pattern == 2, checkered, dotted)))
    border = coverage((0.7 - radial) * r_px)  # the ring's outer band in the second colour
    return torch.where(shape == SHAPES.index("ring"), torch.maximum(q, border), q)


def sprite_layer(
    centers: Tensor,
    radius: Tensor,
    angle: Tensor,
    shape: Tensor,
    pattern: Tensor,
    period: Tensor,
    colors: Tensor,
    present: Tensor,
    image_size: int,
) -> tuple[Tensor, Tensor]:
    """One sprite per video over ``T`` frames: ``(alpha [B, T, 1, H, W], rgb [B, T, 3, H, W])``.

    ``centers [B, T, 2]`` normalized; ``radius, angle, period [B]`` (period in
    radius units); ``shape, pattern [B]`` long; ``colors [B, 2, 3]``; ``present [B]`` bool.
    The texture is fixed to the sprite: it translates with the centre.
    """
    yy, xx = pixel_centers(image_size)
    dx = xx - centers[..., 0, None, None]  # [B, T, H, W]
    dy = yy - centers[..., 1, None, None]
    r, a = radius[:, None, None, None], angle[:, None, None, None]  # [B, 1, 1, 1]
    u = (dx * a.cos() + dy * a.sin()) / r  # [B, T, H, W], radius units
    v = (-dx * a.sin() + dy * a.cos()) / r
    r_px = r * image_size
    sh, pa, pe = (x[:, None, None, None] for x in (shape, pattern, period))  # [B, 1, 1, 1]
    alpha = coverage(_shape_distance(u, v, sh) * r_px) * present[:, None, None, None]  # [B, T, H, W]
    q = _fill(u, v, pa, sh, pe, r_px)[:, :, None]  # [B, T, 1, H, W]
    c0, c1 = colors[:, None, 0, :, None, None], colors[:, None, 1, :, None, None]  # [B, 1, 3, 1, 1]
    return alpha[:, :, None], c0 + (c1 - c0) * q  # [B, T, 1, H, W], [B, T, 3, H, W]
