"""Stochasticity masks over blocks of frames.

A causal student that generates blocks of ``P`` latent frames (Self-Forcing,
LongLive, CausVid: ``P = 3``) takes one decision per (block, step): the
frames of a block share the timestep and are denoised in one pass, so they are
all stochastic or all deterministic at a step. Schedules stay generic: draw
the mask over blocks, ``schedule.mask(F // P, N, generator)`` (``[F/P, N]``;
``OneStepPerFrame`` then gives one stochastic step per block), and expand it
to frames with :func:`expand_block_mask` (``[F, N]``, what the rollout records
per frame).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["expand_block_mask", "is_block_mask"]


def expand_block_mask(mask: Tensor, frames_per_block: int) -> Tensor:
    """``[F/P, N]`` bool mask over blocks -> ``[F, N]`` over frames (each block's row repeated ``P`` times)."""
    if int(frames_per_block) < 1:
        raise ValueError(f"frames_per_block must be >= 1, got {frames_per_block}")
    if mask.dim() != 2:
        raise ValueError(f"mask must be [F_blocks, N], got shape {tuple(mask.shape)}")
    return mask.repeat_interleave(int(frames_per_block), dim=0)  # [F, N]


def is_block_mask(mask: Tensor, frames_per_block: int) -> bool:
    """Whether the ``[F, N]`` mask is the same on every frame of each block of ``frames_per_block`` frames."""
    p = int(frames_per_block)
    if mask.dim() != 2 or mask.shape[0] % p:
        return False
    blocks = mask.view(mask.shape[0] // p, p, mask.shape[1])  # [F/P, P, N]
    return bool((blocks == blocks[:, :1]).all())
