"""The clipped GRPO objective with a closed-form KL to a frozen reference (contract)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grpo_loss"]


def grpo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor | None,
    clip_range: float,
    mean: Tensor | None = None,
    ref_mean: Tensor | None = None,
    std: Tensor | None = None,
    kl_coef: float = 0.0,
) -> dict[str, Tensor]:
    """PPO-style clipped surrogate over ``S`` stochastic actions.

    Args:
        log_prob: ``[S]`` log-probs under the current policy (with gradients).
        old_log_prob: ``[S]`` log-probs recorded while acting.
        advantages: ``[S]`` advantages; required.
        clip_range: ``eps`` of ``clip(r, 1 - eps, 1 + eps)``.
        mean, ref_mean: ``[S, ...]`` Gaussian means of the current and the frozen
            reference policy; needed when ``kl_coef > 0``.
        std: ``[S]`` the (shared) std of both Gaussians; needed when ``kl_coef > 0``.
        kl_coef: weight of the KL term.

    Returns a dict: ``loss = loss_policy + loss_kl`` (to backprop), ``loss_policy``,
    ``loss_kl`` (already weighted), and the metrics ``clip_fraction``,
    ``approx_kl`` (``mean((r - 1) - log r)``, k3 estimator) and ``ratio_mean``.
    """
    if advantages is None:
        raise ValueError("grpo_loss needs advantages; got None")
    if log_prob.dim() != 1:
        raise ValueError(f"log_prob must be [S], got shape {tuple(log_prob.shape)}")
    for name, t in (("old_log_prob", old_log_prob), ("advantages", advantages)):
        if t.shape != log_prob.shape:
            raise ValueError(f"{name} must have log_prob's shape {tuple(log_prob.shape)}, got {tuple(t.shape)}")
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")

    log_ratio = log_prob - old_log_prob.detach()  # [S]
    ratio = torch.exp(log_ratio)  # [S]
    adv = advantages.detach()
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * adv
    loss_policy = -torch.minimum(unclipped, clipped).mean()

    if kl_coef > 0:
        if mean is None or ref_mean is None or std is None:
            raise ValueError("kl_coef > 0 needs mean, ref_mean and std")
        if mean.shape != ref_mean.shape or mean.shape[0] != log_prob.shape[0]:
            raise ValueError(
                f"mean and ref_mean must both be [S, ...] with S = {log_prob.shape[0]}, "
                f"got {tuple(mean.shape)} and {tuple(ref_mean.shape)}"
            )
        if std.shape != log_prob.shape:
            raise ValueError(f"std must be [S] = {tuple(log_prob.shape)}, got {tuple(std.shape)}")
        sq = ((mean - ref_mean.detach()) ** 2).flatten(1).mean(dim=1)  # [S]
        loss_kl = kl_coef * (sq / (2.0 * std.detach() ** 2)).mean()
    else:
        loss_kl = torch.zeros((), dtype=loss_policy.dtype, device=loss_policy.device)

    with torch.no_grad():
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        ratio_mean = ratio.mean()
    return {
        "loss": loss_policy + loss_kl,
        "loss_policy": loss_policy,
        "loss_kl": loss_kl,
        "clip_fraction": clip_fraction,
        "approx_kl": approx_kl,
        "ratio_mean": ratio_mean,
    }
