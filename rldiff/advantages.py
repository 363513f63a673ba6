"""Returns and group-relative advantages (contract), and the advantage estimators of the GRPO trainer.

Shapes: ``B`` controls, ``G`` rollouts per control, ``F`` frames, ``R = B * G``
rollouts in a flat batch.

An estimator turns a collected rollout's rewards into per-frame advantages;
one class per variant (pass one to ``GRPOTrainer(advantage=...)``):

- :class:`GroupAdvantage`: the total reward's returns normalized within each
  group (Flow-GRPO, AR-Drag).
- :class:`PerTermAdvantage`: each named reward term normalized within its
  group, then summed with weights, ``sum_k w_k norm_G(R_k)`` (MixGRPO and
  DanceGRPO with several reward models).
- :class:`RenormalizedPerTermAdvantage`: that weighted sum normalized within
  the group again, so every group and frame has unit spread.

:func:`compute_advantages` does what every estimator shares: gathering
groups across ranks, excluding groups with non-finite values, clamping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from rldiff import distributed as dist_utils

__all__ = [
    "returns_to_go",
    "group_normalize",
    "group_normalize_by_id",
    "AdvantageEstimator",
    "GroupAdvantage",
    "PerTermAdvantage",
    "RenormalizedPerTermAdvantage",
    "Advantages",
    "compute_advantages",
]


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


# ----------------------------------------------------------------------------- estimators
class AdvantageEstimator:
    """Base of the estimators: which reward signals to normalize, and how to combine them.

    ``signals(rollout) -> {name: [R, F]}`` picks the per-frame rewards;
    ``combine(normalized {name: [R_ok, F]}, groups [R_ok], eps) -> [R_ok, F]``
    merges their group-normalized returns. ``with_default_weights(weights)``
    returns the estimator with the reward's own term weights filled in where
    the estimator needs weights and was given none (the job passes
    ``CompositeReward.term_weights``); estimators without weights return themselves.
    """

    def signals(self, rollout) -> dict[str, Tensor]:
        raise NotImplementedError

    def combine(self, normalized: dict[str, Tensor], groups: Tensor, eps: float) -> Tensor:
        raise NotImplementedError

    def with_default_weights(self, weights: Mapping[str, float] | None) -> AdvantageEstimator:
        return self


@dataclass(frozen=True)
class GroupAdvantage(AdvantageEstimator):
    """The total reward's returns, normalized within each group (Flow-GRPO, AR-Drag)."""

    def signals(self, rollout) -> dict[str, Tensor]:
        return {"reward": rollout["reward"].float()}  # [R, F]

    def combine(self, normalized: dict[str, Tensor], groups: Tensor, eps: float) -> Tensor:
        return normalized["reward"]


@dataclass(frozen=True)
class PerTermAdvantage(AdvantageEstimator):
    """``sum_k w_k * norm_G(R_k)`` over named reward terms (MixGRPO, DanceGRPO with several rewards).

    Each ``("reward_terms", name)`` of the rollout is turned into returns and
    normalized within its group on its own, then the terms are summed with
    their weights: a term with a small spread inside the group (a tracker's
    early frames) counts as much as a noisy one instead of drowning in it.

    Args:
        weights: ``{term name: weight}``; ``None`` until :meth:`with_default_weights`
            fills in the composite reward's own weights.
    """

    weights: Mapping[str, float] | None = None

    def __post_init__(self):
        if self.weights is not None:
            if not isinstance(self.weights, Mapping) or not self.weights:
                raise ValueError(f"{type(self).__name__}: weights must be a non-empty mapping of term name -> weight, got {self.weights!r}")
            object.__setattr__(self, "weights", MappingProxyType({str(k): float(v) for k, v in self.weights.items()}))

    def with_default_weights(self, weights: Mapping[str, float] | None) -> AdvantageEstimator:
        if self.weights is not None:
            return self
        if not weights:
            raise ValueError(f"{type(self).__name__} needs term weights: pass weights= or a reward with term_weights (a CompositeReward), got {weights!r}")
        return type(self)(weights=weights)

    def signals(self, rollout) -> dict[str, Tensor]:
        if self.weights is None:
            raise ValueError(f"{type(self).__name__}: no weights (call with_default_weights(reward.term_weights) or pass weights=)")
        have = sorted(rollout["reward_terms"].keys()) if "reward_terms" in rollout.keys() else []
        missing = sorted(name for name in self.weights if name not in have)
        if missing:
            raise KeyError(f"{type(self).__name__}: weights name {missing}, the rollout's reward_terms are {have}")
        return {name: rollout["reward_terms", name].float() for name in self.weights}  # each [R, F]

    def combine(self, normalized: dict[str, Tensor], groups: Tensor, eps: float) -> Tensor:
        return sum(self.weights[name] * value for name, value in normalized.items())  # [R_ok, F]


@dataclass(frozen=True)
class RenormalizedPerTermAdvantage(PerTermAdvantage):
    """:class:`PerTermAdvantage`'s weighted sum, normalized within the group again (unit spread per group and frame)."""

    def combine(self, normalized: dict[str, Tensor], groups: Tensor, eps: float) -> Tensor:
        return group_normalize_by_id(super().combine(normalized, groups, eps), groups, eps)[0]


@dataclass
class Advantages:
    """Per-frame advantages of this rank's rollouts and the group bookkeeping."""

    frame: Tensor  # [R, F] clamped, zero for excluded rollouts
    valid: Tensor  # [R] bool: rollout belongs to a group with only finite values
    num_groups: int
    nonfinite_groups: int
    zero_variance_groups: int


def compute_advantages(rollout, gamma: float, eps: float, adv_clip: float, estimator: AdvantageEstimator | None = None) -> Advantages:
    """Group-relative advantages of a rollout batch, with groups gathered across ranks.

    ``estimator`` (default :class:`GroupAdvantage`) picks the reward signals;
    each is turned into returns (``gamma``), normalized within its group and
    combined by the estimator, then clamped to ``[-adv_clip, adv_clip]``.

    A group with any non-finite value in the estimator's signals, the total
    reward or the old log-probs (on any rank) is excluded: its rollouts get
    advantage 0 and ``valid = False``.
    """
    if not adv_clip > 0:
        raise ValueError(f"compute_advantages: adv_clip must be > 0, got {adv_clip}")
    estimator = estimator if estimator is not None else GroupAdvantage()
    signals = estimator.signals(rollout)  # {name: [R, F]}
    reward = rollout["reward"].float()  # [R, F]
    old_logp = rollout["steps", "log_prob"]  # [R, S]
    finite = torch.isfinite(reward).all(dim=1) & torch.isfinite(old_logp).all(dim=1)  # [R]
    for value in signals.values():
        finite &= torch.isfinite(value).all(dim=1)
    all_group = dist_utils.all_gather_cat(rollout["group"])  # [R_all]
    all_finite = dist_utils.all_gather_cat(finite.to(torch.uint8)).bool()  # [R_all]
    ids, bad_ids = torch.unique(all_group), torch.unique(all_group[~all_finite])
    ok = ~torch.isin(all_group, bad_ids)  # [R_all]

    adv_all = torch.zeros(len(all_group), reward.shape[1], dtype=reward.dtype, device=reward.device)  # [R_all, F]
    zero_var = 0
    if bool(ok.any()):
        kept = all_group[ok]  # [R_ok]
        normalized, spread = {}, torch.zeros(int(ok.sum()), dtype=reward.dtype, device=reward.device)  # [R_ok]
        for name, value in signals.items():
            returns = returns_to_go(dist_utils.all_gather_cat(value)[ok], gamma)  # [R_ok, F]
            normalized[name], std = group_normalize_by_id(returns, kept, eps)
            spread = torch.maximum(spread, std.amax(dim=1))
        adv_all[ok] = estimator.combine(normalized, kept, eps).clamp(-adv_clip, adv_clip)
        zero_var = len(torch.unique(kept[spread <= 1e-8]))

    start = dist_utils.rank() * reward.shape[0]
    local = slice(start, start + reward.shape[0])
    return Advantages(adv_all[local], ok[local], len(ids), len(bad_ids), zero_var)
