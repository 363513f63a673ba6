"""Argument checks of :class:`rldiff.trainer.GRPOTrainer` (each names the argument, what it must be and what came in)."""

from __future__ import annotations

import math

__all__ = ["check_trainer_args"]


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"GRPOTrainer: {name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


def check_trainer_args(
    *, world: int, num_controls, group_size, epochs, checkpoint_every, minibatch_size, micro_batch_size, lr, clip_range, adv_clip,
    max_grad_norm, norm_eps, kl_coef, gamma, max_nonfinite_fraction,
) -> None:  # fmt: skip
    """Raise ``ValueError`` naming the first bad argument."""
    for name, value in (("num_controls", num_controls), ("group_size", group_size), ("epochs", epochs), ("checkpoint_every", checkpoint_every)):
        _positive_int(name, value)
    _positive_int("minibatch_size", minibatch_size, allow_none=True)
    _positive_int("micro_batch_size", micro_batch_size, allow_none=True)
    if group_size < 2:
        raise ValueError(f"GRPOTrainer: group_size must be >= 2 for group-relative advantages, got {group_size}")
    if group_size % world:
        raise ValueError(f"GRPOTrainer: group_size={group_size} must be divisible by the world size {world}")
    for name, value in (("lr", lr), ("clip_range", clip_range), ("adv_clip", adv_clip), ("max_grad_norm", max_grad_norm), ("norm_eps", norm_eps)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"GRPOTrainer: {name} must be a finite number > 0, got {value!r}")
    if not (math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"GRPOTrainer: kl_coef must be a finite number >= 0 (0: no KL), got {kl_coef!r}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"GRPOTrainer: gamma must lie in [0, 1], got {gamma!r}")
    if not 0.0 <= max_nonfinite_fraction <= 1.0:
        raise ValueError(f"GRPOTrainer: max_nonfinite_fraction must lie in [0, 1], got {max_nonfinite_fraction!r}")
