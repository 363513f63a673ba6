"""Losses of Step 1: flow matching, DMD (distribution matching distillation) and the adversarial term.

Pure functions of explicit tensors (no models inside), so the same math serves
any teacher/critic/generator. Convention as in :mod:`rldiff.flow`:
``x_sigma = (1 - sigma) x0 + sigma eps``, velocity ``v = eps - x0``, hence the
x0-prediction ``x0_hat = x_sigma - sigma * v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rldiff.flow import shift_sigma

__all__ = [
    "add_noise",
    "x0_from_velocity",
    "flow_matching_loss",
    "sample_dmd_sigma",
    "dmd_loss",
    "generator_adversarial_loss",
    "discriminator_loss",
]


def _per_sample(sigma: Tensor, like: Tensor) -> Tensor:
    """``sigma [B]`` (or broadcastable) viewed to broadcast against ``like [B, ...]``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=like.device)
    if sigma.dim() == 1 and like.dim() > 1:
        sigma = sigma.view(-1, *([1] * (like.dim() - 1)))
    return sigma


def add_noise(x0: Tensor, eps: Tensor, sigma: Tensor) -> Tensor:
    """``(1 - sigma) * x0 + sigma * eps`` with per-sample ``sigma [B]``."""
    s = _per_sample(sigma, x0)
    return (1 - s) * x0.float() + s * eps.float()


def x0_from_velocity(x: Tensor, v: Tensor, sigma: Tensor) -> Tensor:
    """Clean-sample estimate ``x - sigma * v`` with per-sample ``sigma [B]``."""
    return x.float() - _per_sample(sigma, x) * v.float()


def flow_matching_loss(v_pred: Tensor, x0: Tensor, eps: Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
    """Rectified-flow regression ``mean ||v_pred - (eps - x0)||^2``; ``weight [B]`` optionally weights samples."""
    if v_pred.shape != x0.shape or eps.shape != x0.shape:
        raise ValueError(f"v_pred, x0, eps must share a shape, got {tuple(v_pred.shape)}, {tuple(x0.shape)}, {tuple(eps.shape)}")
    per = ((v_pred.float() - (eps.float() - x0.float())) ** 2).flatten(1).mean(1)  # [B]
    loss = (per * weight).mean() if weight is not None else per.mean()
    return {"loss": loss, "loss_flow": loss.detach()}


def sample_dmd_sigma(batch_size: int, shift: float = 1.0, lo: float = 0.02, hi: float = 0.98, generator: torch.Generator | None = None) -> Tensor:
    """Noise levels for DMD: uniform, shifted, then clamped to ``[lo, hi]`` (Self-Forcing uses t in [20, 980]/1000)."""
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"need 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    u = torch.rand(batch_size, generator=generator)  # [B]
    return shift_sigma(u, shift).clamp(lo, hi)


def dmd_loss(x: Tensor, real_x0: Tensor, fake_x0: Tensor, eps: float = 1e-6) -> dict[str, Tensor]:
    """Distribution-matching loss for a generator sample ``x`` (with gradients).

    ``real_x0`` / ``fake_x0`` are the frozen teacher's and the critic's clean
    predictions at the same noised ``x_t`` (no gradients). The KL gradient is
    ``(fake - real)``, normalized per sample by ``mean |x - real|``; the loss
    ``0.5 * ||x - sg(x - grad)||^2`` (mean) has exactly that gradient direction.
    """
    if not (x.shape == real_x0.shape == fake_x0.shape):
        raise ValueError(f"x, real_x0, fake_x0 must share a shape, got {tuple(x.shape)}, {tuple(real_x0.shape)}, {tuple(fake_x0.shape)}")
    xf = x.float()
    with torch.no_grad():
        norm = (xf - real_x0.float()).abs().flatten(1).mean(1).clamp_min(eps)  # [B]
        grad = (fake_x0.float() - real_x0.float()) / norm.view(-1, *([1] * (x.dim() - 1)))
        grad = torch.nan_to_num(grad)
        target = xf - grad
    loss = 0.5 * F.mse_loss(xf, target)
    return {"loss": loss, "loss_dmd": loss.detach(), "dmd_grad_norm": grad.flatten(1).norm(dim=1).mean()}


def generator_adversarial_loss(fake_logits: Tensor) -> dict[str, Tensor]:
    """Non-saturating generator loss ``softplus(-D(fake))``."""
    loss = F.softplus(-fake_logits.float()).mean()
    return {"loss": loss, "loss_gan_g": loss.detach()}


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """Discriminator loss ``softplus(-D(real)) + softplus(D(fake))`` with accuracy metrics."""
    loss = F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()
    with torch.no_grad():
        acc = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
    return {"loss": loss, "loss_gan_d": loss.detach(), "disc_accuracy": acc}
