"""The clipped GRPO objective with a closed-form KL to a frozen reference (contract)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grpo_loss"]


def _kl_std(std: float | Tensor, log_prob: Tensor) -> Tensor:
    """``std`` (a float or a tensor broadcastable to ``[S]``) as a detached ``[S]`` tensor; it must be > 0."""
    s = log_prob.shape
    if isinstance(std, bool) or not isinstance(std, (int, float, Tensor)):
        raise TypeError(f"grpo_loss: std must be a float or a tensor broadcastable to [S] = {tuple(s)}, got {type(std).__name__}")
    std = torch.as_tensor(std, dtype=log_prob.dtype, device=log_prob.device).detach()
    try:
        ok = torch.broadcast_shapes(std.shape, s) == s
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"grpo_loss: std must broadcast to [S] = {tuple(s)} (e.g. [S], [1] or a float), got shape {tuple(std.shape)}")
    if not bool((std > 0).all()):
        raise ValueError(f"grpo_loss: std must be > 0 for the KL term (a deterministic step has no Gaussian), got min {float(std.min())}")
    return std.expand(s)  # [S]


def grpo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor | None,
    clip_range: float,
    mean: Tensor | None = None,
    ref_mean: Tensor | None = None,
    std: float | Tensor | None = None,
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
        std: the std both Gaussians share, ``> 0``: a float, or a tensor
            broadcastable to ``[S]`` (``[S]``, ``[1]`` or 0-d); needed when ``kl_coef > 0``.
        kl_coef: weight of the KL term.

    Returns a dict: ``loss = loss_policy + loss_kl`` (to backprop), ``loss_policy``,
    ``loss_kl`` (already weighted), and the metrics ``clip_fraction``,
    ``approx_kl`` (``mean((r - 1) - log r)``, k3 estimator) and ``ratio_mean``.

    Conventions against Flow-GRPO. The KL here is the exact KL of two
    Gaussians with one std per action, averaged over the action's dims like the
    log-probs: ``KL_s = mean_dims((mean - ref_mean)^2) / (2 std^2)``, with
    ``std = g * sqrt(|dt|)`` for an Euler-Maruyama step of diffusion ``g``.
    Flow-GRPO divides the same squared mean difference by ``2 g^2`` without
    ``|dt|`` (its ``std_dev_t`` is ``g``), so its KL is this one times
    ``|dt| < 1`` (this one is theirs times ``1 / |dt|``); its ``beta``
    corresponds to ``kl_coef = beta * |dt|`` here (``|dt|`` the step's
    ``sigma - sigma_next``: ``beta / N`` for N uniform steps).
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
        std = _kl_std(std, log_prob)  # [S]
        sq = ((mean - ref_mean.detach()) ** 2).flatten(1).mean(dim=1)  # [S]
        loss_kl = kl_coef * (sq / (2.0 * std**2)).mean()
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
