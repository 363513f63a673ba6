"""Returns and group-relative advantages (contract).

Shapes: ``B`` controls, ``G`` rollouts per control, ``F`` frames, ``R = B * G``
rollouts in a flat batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["returns_to_go", "group_normalize", "group_normalize_by_id"]


def returns_to_go(rewards: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go along the last (frame) axis: ``G_m = sum_{k>=m} gamma^(k-m) r_k``.

    ``gamma = 0`` gives the immediate per-frame reward, ``gamma = 1`` the sum of
    the remaining rewards. ``rewards`` is ``[..., F]``; the result has its shape.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if rewards.dim() < 1:
        raise ValueError("rewards must have a frame axis [..., F]")
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for m in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., m] + gamma * running
        out[..., m] = running
    return out


def group_normalize(x: Tensor, eps: float = 1e-4) -> Tensor:
    """``(x - mean_G) / (std_G + eps)`` over the group axis of ``x[B, G, ...]``.

    Mean and population std (correction 0) are taken over axis 1, separately for
    every other index.
    """
    if x.dim() < 2:
        raise ValueError(f"x must be [B, G, ...], got shape {tuple(x.shape)}")
    mean = x.mean(dim=1, keepdim=True)  # [B, 1, ...]
    std = x.std(dim=1, keepdim=True, correction=0)  # [B, 1, ...]
    return (x - mean) / (std + eps)


def group_normalize_by_id(x: Tensor, group: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Group normalization for a flat batch ``x[R, ...]`` with group ids ``group[R]``.

    Equal to :func:`group_normalize` when the rollouts are laid out as
    ``[B, G]``, but works for any order and for groups of unequal size (e.g.
    after non-finite rollouts were dropped). Returns ``(normalized [R, ...],
    group_std [R, ...])`` so callers can count zero-variance groups.
    """
    if group.dim() != 1 or group.shape[0] != x.shape[0]:
        raise ValueError(f"group must be [R] with R = {x.shape[0]}, got shape {tuple(group.shape)}")
    ids, inverse = torch.unique(group, return_inverse=True)  # [U], [R]
    flat = x.reshape(x.shape[0], -1).to(torch.float64)  # [R, D]
    num = len(ids)
    count = torch.zeros(num, 1, dtype=flat.dtype, device=flat.device).index_add_(
        0, inverse, torch.ones(x.shape[0], 1, dtype=flat.dtype, device=flat.device)
    )  # [U, 1]
    mean = torch.zeros(num, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, inverse, flat) / count
    centered = flat - mean[inverse]  # [R, D]
    var = torch.zeros_like(mean).index_add_(0, inverse, centered**2) / count  # [U, D]
    std = var.sqrt()[inverse]  # [R, D]
    normalized = (centered / (std + eps)).to(x.dtype).reshape(x.shape)
    return normalized, std.to(x.dtype).reshape(x.shape)
