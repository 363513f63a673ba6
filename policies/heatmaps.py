"""Trajectory -> Gaussian heatmap video (the drawing that the codec turns into trajectory latents).

Coordinates: a normalized point ``(x, y)`` in [0, 1] (x right, y down) covers
the image from the left/top edge (0) to the right/bottom edge (1); pixel column
``j`` spans ``[j / W, (j + 1) / W]`` with its centre at ``(j + 0.5) / W``. So the
point sits at pixel-index coordinates ``u = x * W - 0.5``, ``v = y * H - 0.5``
and a point exactly at a pixel centre gives that pixel the value 1.

Colour scheme: track ``k`` is drawn in a fixed, fully saturated colour with
hue ``(k * 0.618034) mod 1`` (golden-ratio spacing; track 0 is pure red), so
tracks stay distinguishable and track ``k``'s colour never depends on how many
tracks there are. Each visible point adds a Gaussian blob
``colour_k * exp(-((i - v)^2 + (j - u)^2) / (2 sigma^2))`` on a black
background; overlapping blobs combine by per-channel maximum, so the video
stays in [0, 1]. Invisible points draw nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["track_colours", "trajectory_heatmaps"]

_GOLDEN = 0.6180339887498949


def track_colours(num_tracks: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """RGB colours ``[K, 3]`` in [0, 1]: hue ``(k * 0.618034) mod 1`` at full saturation and value."""
    hue = (torch.arange(num_tracks, dtype=torch.float64, device=device) * _GOLDEN) % 1.0  # [K]
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64, device=device)  # R, G, B
    sector = (offsets[None, :] + hue[:, None] * 6.0) % 6.0  # [K, 3]
    # HSV -> RGB with s = v = 1: channel = 1 - clamp(min(sector, 4 - sector), 0, 1)
    rgb = 1.0 - torch.minimum(sector, 4.0 - sector).clamp(0.0, 1.0)  # [K, 3]
    return rgb.to(dtype)


def trajectory_heatmaps(
    trajectory: Tensor,
    visibility: Tensor,
    height: int,
    width: int,
    sigma: float,
    colours: Tensor | None = None,
) -> Tensor:
    """Draw each visible track point as a coloured Gaussian: ``[B, T, K, 2]`` -> ``[B, T, 3, H, W]`` in [0, 1].

    Args:
        trajectory: ``[B, T, K, 2]`` normalized (x, y).
        visibility: ``[B, T, K]`` bool.
        height, width: output size in pixels.
        sigma: Gaussian standard deviation in pixels (> 0).
        colours: ``[K, 3]`` in [0, 1]; default :func:`track_colours`.
    """
    if trajectory.dim() != 4 or trajectory.shape[-1] != 2:
        raise ValueError(f"trajectory_heatmaps: trajectory must be [B, T, K, 2], got {tuple(trajectory.shape)}")
    b, t, k, _ = trajectory.shape
    if tuple(visibility.shape) != (b, t, k):
        raise ValueError(f"trajectory_heatmaps: visibility must be [B, T, K] = {(b, t, k)}, got {tuple(visibility.shape)}")
    if not sigma > 0:
        raise ValueError(f"trajectory_heatmaps: sigma must be > 0 pixels, got {sigma}")
    device = trajectory.device
    if colours is None:
        colours = track_colours(k, device=device)
    if tuple(colours.shape) != (k, 3):
        raise ValueError(f"trajectory_heatmaps: colours must be [K, 3] = {(k, 3)}, got {tuple(colours.shape)}")
    traj = trajectory.float()
    u = traj[..., 0] * width - 0.5  # [B, T, K] pixel-index x
    v = traj[..., 1] * height - 0.5  # [B, T, K] pixel-index y
    cols = torch.arange(width, device=device, dtype=torch.float32)  # [W]
    rows = torch.arange(height, device=device, dtype=torch.float32)  # [H]
    inv = 1.0 / (2.0 * float(sigma) ** 2)
    gx = torch.exp(-((cols - u[..., None]) ** 2) * inv) * visibility[..., None]  # [B, T, K, W]
    gy = torch.exp(-((rows - v[..., None]) ** 2) * inv)  # [B, T, K, H]
    video = torch.zeros(b, t, 3, height, width, device=device)  # [B, T, 3, H, W]
    for i in range(k):  # one track at a time keeps memory at one [B, T, 3, H, W]
        blob = gy[:, :, i, :, None] * gx[:, :, i, None, :]  # [B, T, H, W]
        video = torch.maximum(video, colours[i].float().to(device).view(1, 1, 3, 1, 1) * blob[:, :, None])
    return video
