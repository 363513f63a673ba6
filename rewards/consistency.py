"""Tracker-free motion reward: does the content move along the requested trajectories and keep its look?

For every track k and pixel frame t, the patch of frame t centred on the
target point ``trajectory[t, k]`` is compared with the patch of frame t-1
centred on ``trajectory[t-1, k]`` (frame 0 with the patch of the reference
image at ``trajectory[0, k]``). That is the photometric error a point tracker
such as Lucas-Kanade minimises, evaluated at the displacement the control asks
for: it is low only when the content under the point moved as requested
*and* looks the same as one frame before. A video that does not move, or
whose texture changes from frame to frame (which makes trackers drift and
lose points), scores worse. No tracker runs, so the reward is cheap, has no
tracker noise and does not accumulate a tracker's drift over the frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rewards.base import StreamingReward
from rewards.registry import register_reward
from rldiff.types import Control

__all__ = ["TrackConsistencyReward", "sample_patches"]


def sample_patches(frames: Tensor, points: Tensor, radius: int) -> Tensor:
    """Bilinear patches ``[B, K, 3, P, P]`` (``P = 2 * radius + 1``, pixel spacing) of ``frames [B, 3, H, W]``
    centred on normalized points ``points [B, K, 2]``; outside the image reads as the border pixel."""
    b, _, h, w = frames.shape
    k = points.shape[1]
    offsets = torch.arange(-radius, radius + 1, dtype=frames.dtype, device=frames.device)  # [P]
    dy, dx = torch.meshgrid(offsets / h, offsets / w, indexing="ij")  # [P, P] normalized
    grid = points[:, :, None, None, :].to(frames.dtype) + torch.stack([dx, dy], dim=-1)  # [B, K, P, P, 2]
    grid = 2.0 * grid - 1.0  # [0, 1] image edges -> [-1, 1] (align_corners=False)
    p = 2 * radius + 1
    out = F.grid_sample(frames, grid.reshape(b, k * p, p, 2), mode="bilinear", padding_mode="border", align_corners=False)  # [B, 3, K*P, P]
    return out.reshape(b, 3, k, p, p).permute(0, 2, 1, 3, 4)


@register_reward("track_consistency")
class TrackConsistencyReward(StreamingReward):
    """``-lam * mean_k sum_w g_w ||I_t(p_t + w) - I_{t-1}(p_{t-1} + w)||^2 / 3`` per pixel frame t.

    ``p_t = trajectory[t, k]``; ``g`` is a Gaussian window of std ``sigma``
    pixels over a ``(2 * radius + 1)^2`` patch, normalized to sum 1; ``I_{-1}``
    is the control's reference image (frame 0 must reproduce it where the
    tracks start). A track counts at t when the control says it is visible at
    t and at t-1 (at 0 for frame 0); a frame with no counted track scores 0.
    The component ``"error"`` is the mean patch error itself (``>= 0``).

    Args:
        lam: reward scale (the reward is ``-lam * error``).
        radius: half patch side in pixels of the frames scored.
        sigma: std of the Gaussian window in pixels (``None``: ``radius / 2``).
    """

    def __init__(self, lam: float = 1.0, radius: int = 4, sigma: float | None = None):
        super().__init__()
        if not lam > 0:
            raise ValueError(f"TrackConsistencyReward: lam must be > 0, got {lam}")
        if not isinstance(radius, int) or radius < 1:
            raise ValueError(f"TrackConsistencyReward: radius must be an int >= 1 (pixels), got {radius!r}")
        sigma = radius / 2.0 if sigma is None else sigma
        if not sigma > 0:
            raise ValueError(f"TrackConsistencyReward: sigma must be > 0 (pixels), got {sigma}")
        self.lam, self.radius, self.sigma = float(lam), radius, float(sigma)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * self.sigma**2))
        self._window = g / g.sum()  # [P, P]
        self._size: tuple[int, int] | None = None  # the reference's (H, W): frames must match it
        self._prev: Tensor | None = None  # [B, K, 3, P, P] the last frame's patches at its target points

    def _reset(self, control: Control) -> None:  # Control has checked its shapes
        self._size = tuple(control.reference.shape[-2:])
        self._prev = sample_patches(control.reference.float(), control.trajectory[:, 0], self.radius)  # frame "-1"

    def _step(self, frames: Tensor, control: Control, start: int) -> dict[str, Tensor]:
        t = frames.shape[1]
        if start + t > control.trajectory.shape[1]:
            raise ValueError(f"TrackConsistencyReward: control.trajectory covers {control.trajectory.shape[1]} frames, got frame {start + t - 1}")
        if self._size != tuple(frames.shape[-2:]):
            raise ValueError(f"TrackConsistencyReward: frames are {tuple(frames.shape[-2:])}, the reference image {self._size}")
        window = self._window.to(frames.device)
        errors, counted = [], []
        for j in range(t):
            m = start + j
            now = sample_patches(frames[:, j].float(), control.trajectory[:, m].to(frames.device), self.radius)  # [B, K, 3, P, P]
            errors.append(((now - self._prev.to(frames.device)).pow(2).mean(dim=2) * window).sum(dim=(-2, -1)))  # [B, K]
            counted.append(control.visibility[:, m] & control.visibility[:, max(m - 1, 0)])  # [B, K]
            self._prev = now  # frame m's patches at trajectory[m]: what frame m + 1 is compared with
        err, count = torch.stack(errors, 1), torch.stack(counted, 1).to(frames.device)  # [B, t, K]
        n = count.sum(dim=-1)  # [B, t]
        error = torch.where(count, err, torch.zeros_like(err)).sum(dim=-1) / n.clamp(min=1)  # [B, t]
        error = torch.where(n > 0, error, torch.zeros_like(error))
        return {"reward": -self.lam * error, "error": error}
