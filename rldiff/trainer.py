"""A generic GRPO trainer for flow-matching policies: collect, score, normalize, update, checkpoint.

Works for any policy satisfying :class:`rldiff.protocols.RolloutPolicy`, any
collector satisfying :class:`rldiff.protocols.Collector` (an env-driven video
rollout, the toy 2-D sampler, ...), any control source and any stochasticity
schedule. One iteration:

    controls (B) -> collect R = B*G rollouts -> per-frame rewards [R, F]
    -> returns_to_go -> group normalization (gathered over ranks) -> clamp
    -> epochs x minibatches: recompute means (with grad) -> log-probs
       -> grpo_loss (+ KL to the frozen reference) -> clip grad -> step

Under torch.distributed every rank draws the same controls and mask (a shared
generator) and collects ``G / world_size`` rollouts of every group with its own
noise generator; rewards are all-gathered before normalizing, so a group may
span ranks, and gradients are averaged over ranks by the ``parallel`` strategy
(:mod:`rldiff.parallel`: manual all-reduce, DDP or FSDP2). Checkpoints hold full
(unsharded) tensors, so they load into a run with any number of processes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff import distributed as dist_utils
from rldiff.advantages import group_normalize_by_id, returns_to_go
from rldiff.checkpoint import latest_checkpoint, load_json, load_tensors, optimizer_state_from_tensors, optimizer_to_tensors, save_tensors, write_checkpoint_dir
from rldiff.flow import gaussian_log_prob
from rldiff.grpo import grpo_loss
from rldiff.parallel import ManualAllReduce
from rldiff.rollout import step_advantages
from rldiff.stochasticity import StochasticitySchedule

__all__ = ["GRPOTrainer", "Advantages", "compute_advantages", "NonFiniteError"]


class NonFiniteError(RuntimeError):
    """Too many groups had non-finite rewards or log-probs."""


@dataclass
class Advantages:
    """Per-frame advantages of the local rollouts and the group bookkeeping."""

    frame: Tensor  # [R, F] clamped, zero for excluded rollouts
    valid: Tensor  # [R] bool: rollout belongs to a group with only finite values
    num_groups: int
    nonfinite_groups: int
    zero_variance_groups: int


def compute_advantages(
    rollout: TensorDict, gamma: float, eps: float, adv_clip: float, term_weights: Mapping[str, float] | None = None
) -> Advantages:
    """Group-relative advantages of a rollout batch, with groups gathered across ranks.

    ``term_weights=None``: the total reward's returns are group-normalized.
    ``term_weights={name: w}``: each named ``("reward_terms", name)`` is
    group-normalized on its own, the weighted sum is group-normalized again
    (decoupled normalization, as DanceGRPO does with several reward models):
    a term with a small spread inside the group (a tracker's early frames) then
    counts as much as a noisy one instead of drowning in it.

    A group with any non-finite reward or old log-prob (on any rank) is excluded:
    its rollouts get advantage 0 and ``valid = False``.
    """
    reward = rollout["reward"].float()  # [R, F]
    old_logp = rollout["steps", "log_prob"]  # [R, S]
    finite = torch.isfinite(reward).all(dim=1) & torch.isfinite(old_logp).all(dim=1)  # [R]
    group = rollout["group"]  # [R]
    all_group = dist_utils.all_gather_cat(group)  # [R_all]
    all_finite = dist_utils.all_gather_cat(finite.to(torch.uint8)).bool()  # [R_all]
    if term_weights is None:
        signals = {"reward": (1.0, reward)}
    else:
        have = sorted(rollout["reward_terms"].keys()) if "reward_terms" in rollout.keys() else []
        missing = sorted(name for name in term_weights if name not in have)
        if missing or not term_weights:
            raise KeyError(f"compute_advantages: term_weights names {missing or '(none)'}, the rollout's reward_terms are {have}")
        signals = {name: (float(w), rollout["reward_terms", name].float()) for name, w in term_weights.items()}

    ids = torch.unique(all_group)
    bad_ids = torch.unique(all_group[~all_finite])
    group_ok_all = ~torch.isin(all_group, bad_ids)  # [R_all]
    num_groups, nonfinite_groups = len(ids), len(bad_ids)

    adv_all = torch.zeros(len(all_group), reward.shape[1], dtype=reward.dtype, device=reward.device)  # [R_all, F]
    zero_var = 0
    if bool(group_ok_all.any()):
        kept_groups = all_group[group_ok_all]
        total = 0.0
        for weight, value in signals.values():
            returns = returns_to_go(dist_utils.all_gather_cat(torch.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)), gamma)
            norm, std = group_normalize_by_id(returns[group_ok_all], kept_groups, eps)
            total = total + weight * norm
        if term_weights is not None:
            norm, std = group_normalize_by_id(total, kept_groups, eps)
        adv_all[group_ok_all] = norm.clamp(-adv_clip, adv_clip)
        flat_std = std.amax(dim=1)  # [R_ok]
        zero_var = len(torch.unique(kept_groups[flat_std <= 1e-8]))

    start = dist_utils.rank() * reward.shape[0]
    local = slice(start, start + reward.shape[0])
    return Advantages(adv_all[local], group_ok_all[local], num_groups, nonfinite_groups, zero_var)


class GRPOTrainer:
    """Group Relative Policy Optimization for flow-matching policies (see module docstring).

    Args:
        policy: an ``nn.Module`` with ``recompute(rollout, control) -> mean [R, S, ...]``.
        collector: produces rollout TensorDicts (``rldiff.rollout`` layout).
        controls: a control source with ``sample(batch_size, generator)``.
        schedule: which (frame, step) pairs are stochastic.
        lr: AdamW learning rate (ignored when ``optimizer`` is given).
        optimizer: a ready optimizer over the policy's trainable parameters (not with
            FSDP2, which replaces the parameters: pass ``lr`` instead).
        num_controls: B, controls per iteration.
        group_size: G, rollouts per control (split evenly over ranks).
        gamma: reward-to-go discount over frames (0: per-frame reward).
        term_weights: ``None`` normalizes the total reward in each group; ``{name: w}``
            normalizes each ``("reward_terms", name)`` on its own and sums them with
            these weights (see :func:`compute_advantages`).
        clip_range: PPO clip epsilon (tiny: log-probs are per-dim averages).
        adv_clip: advantages are clamped to ``[-adv_clip, adv_clip]``.
        kl_coef: weight of the closed-form KL to the frozen reference.
        epochs: passes over the collected batch per iteration.
        anneal_iterations: the learning rate falls linearly from its initial value
            at iteration 0 to 0 at this iteration (PPO's usual annealing: the
            last iterates move less, so the final policy wanders less); ``None``: constant.
        minibatch_size: rollouts per optimizer step (``None``: all local rollouts).
        max_grad_norm: gradient-norm clip.
        max_nonfinite_fraction: stop with :class:`NonFiniteError` when a larger
            fraction of the iteration's groups had non-finite rewards/log-probs.
        norm_eps: epsilon of the group normalization.
        seed: seeds the shared (controls, masks) and per-rank (noise) generators.
        checkpoint_dir: where checkpoints go (``None``: no checkpoints).
        checkpoint_every: iterations between checkpoints.
        reference: frozen reference policy for the KL (default: a copy of the
            policy at construction, made only when ``kl_coef > 0``); replicated on every rank.
        parallel: how gradients are synchronized across ranks (:mod:`rldiff.parallel`;
            default :class:`~rldiff.parallel.ManualAllReduce`).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        collector,
        controls,
        schedule: StochasticitySchedule,
        *,
        lr: float = 1e-5,
        optimizer: torch.optim.Optimizer | None = None,
        num_controls: int = 2,
        group_size: int = 4,
        gamma: float = 0.0,
        term_weights: Mapping[str, float] | None = None,
        clip_range: float = 1e-3,
        adv_clip: float = 5.0,
        kl_coef: float = 0.0,
        epochs: int = 1,
        anneal_iterations: int | None = None,
        minibatch_size: int | None = None,
        max_grad_norm: float = 1.0,
        max_nonfinite_fraction: float = 0.25,
        norm_eps: float = 1e-4,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        reference: torch.nn.Module | None = None,
        parallel=None,
    ):
        world = dist_utils.world_size()
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-relative advantages, got {group_size}")
        if group_size % world:
            raise ValueError(f"group_size={group_size} must be divisible by the world size {world}")
        if num_controls < 1 or epochs < 1:
            raise ValueError(f"num_controls and epochs must be >= 1, got {num_controls} and {epochs}")
        if anneal_iterations is not None and anneal_iterations < 1:
            raise ValueError(f"anneal_iterations must be >= 1 or None, got {anneal_iterations}")
        if minibatch_size is not None and minibatch_size < 1:
            raise ValueError(f"minibatch_size must be >= 1 or None, got {minibatch_size}")
        if not 0.0 <= max_nonfinite_fraction <= 1.0:
            raise ValueError(f"max_nonfinite_fraction must lie in [0, 1], got {max_nonfinite_fraction}")
        self.policy, self.collector, self.controls, self.schedule = policy, collector, controls, schedule
        self.num_controls, self.group_size, self.local_group_size = num_controls, group_size, group_size // world
        self.gamma, self.clip_range, self.adv_clip, self.kl_coef = gamma, clip_range, adv_clip, kl_coef
        self.term_weights = dict(term_weights) if term_weights is not None else None
        self.epochs, self.minibatch_size, self.max_grad_norm = epochs, minibatch_size, max_grad_norm
        self.anneal_iterations = anneal_iterations
        self.max_nonfinite_fraction, self.norm_eps = max_nonfinite_fraction, norm_eps
        self.seed, self.checkpoint_every = seed, checkpoint_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.reference = reference
        if kl_coef > 0 and reference is None:
            self.reference = copy.deepcopy(policy).requires_grad_(False).eval()
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        self.runner = self.parallel.wrap(policy)  # runner(rollout, control) -> means; may shard the policy
        self.params = [p for p in policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("policy has no trainable parameters")
        if optimizer is not None:
            own = {id(p) for p in self.params}
            if any(id(p) not in own for g in optimizer.param_groups for p in g["params"]):
                raise ValueError("optimizer must hold the policy's trainable parameters as they are after parallel.wrap (FSDP2 replaces them: pass lr instead)")
        self.optimizer = optimizer or torch.optim.AdamW(self.params, lr=lr)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]  # annealing scales these
        self.shared_gen = torch.Generator().manual_seed(seed)
        self.local_gen = torch.Generator().manual_seed(seed + 1_000_003 * (dist_utils.rank() + 1))
        self.iteration = 0

    # ------------------------------------------------------------------ collect
    def collect(self) -> tuple[TensorDict, object]:
        """Draw controls and a mask, then collect this rank's rollouts (no gradients)."""
        control = self.controls.sample(self.num_controls, generator=self.shared_gen)
        mask = self.schedule.mask(self.collector.num_frames, self.collector.num_steps, self.shared_gen)  # [F, N]
        return self.rollout(control, self.local_group_size, mask, self.local_gen), control

    def rollout(self, control, group_size: int, mask: Tensor, generator: torch.Generator | None = None) -> TensorDict:
        """No-grad rollouts of the current policy through the strategy's runner (what evaluation should call too)."""
        return self.parallel.runner_module(self.runner).collect(self.collector, control, group_size, mask, generator)

    # ------------------------------------------------------------------ update
    def _minibatches(self, num_rows: int) -> list[Tensor]:
        size = self.minibatch_size or num_rows
        order = torch.randperm(num_rows, generator=self.local_gen)
        return [order[i : i + size] for i in range(0, num_rows, size)]

    def _loss(self, mb: TensorDict, control, adv: Tensor, valid: Tensor) -> dict[str, Tensor] | None:
        steps = mb["steps"]
        mean = self.runner(mb, control.index(mb["control_index"]))  # [r, S, ...]
        sel = valid.unsqueeze(1).expand(steps.batch_size).reshape(-1)  # [r*S]
        if not bool(sel.any()):
            return None
        action = steps["action"].flatten(0, 1)[sel]  # [s, ...]
        std = steps["std"].flatten()[sel]  # [s]
        mean_flat = mean.flatten(0, 1)[sel]  # [s, ...]
        log_prob = gaussian_log_prob(action, mean_flat, std)  # [s]
        ref_mean = None
        if self.kl_coef > 0:
            with torch.no_grad():
                ref_mean = self.reference.recompute(mb, control.index(mb["control_index"])).flatten(0, 1)[sel]
        if not bool(torch.isfinite(log_prob).all()):
            return None
        return grpo_loss(
            log_prob,
            steps["log_prob"].flatten()[sel],
            adv.flatten()[sel],
            self.clip_range,
            mean=mean_flat,
            ref_mean=ref_mean,
            std=std,
            kl_coef=self.kl_coef,
        )

    def update(self, rollout: TensorDict, control, adv: Advantages) -> dict[str, float]:
        """Epochs of minibatch GRPO updates on one collected batch."""
        step_adv = step_advantages(adv.frame, rollout["steps", "frame"])  # [R, S]
        sums: dict[str, float] = {}
        count, skipped, first_ratio = 0, 0, float("nan")
        for _ in range(self.epochs):
            for idx in self._minibatches(rollout.shape[0]):
                out = self._loss(rollout[idx], control, step_adv[idx], adv.valid[idx])
                if dist_utils.any_flag(out is None):
                    skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                if math.isnan(first_ratio):
                    first_ratio = float(out["ratio_mean"])
                out["loss"].backward()
                self.parallel.after_backward(self.params)
                grad_norm = self.parallel.clip_grad_norm(self.params, self.max_grad_norm)
                if dist_utils.any_flag(not bool(torch.isfinite(grad_norm))):
                    skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
                count += 1
        metrics = {k: v / max(count, 1) for k, v in sums.items()}
        metrics.update(updates=float(count), skipped_updates=float(skipped), ratio_mean_first=first_ratio)
        return metrics

    # ------------------------------------------------------------------ iterate
    def step(self) -> dict[str, float]:
        """One GRPO iteration; returns its metrics (and checkpoints when due)."""
        t0 = time.perf_counter()
        self._anneal()
        rollout, control = self.collect()
        t1 = time.perf_counter()
        adv = compute_advantages(rollout, self.gamma, self.norm_eps, self.adv_clip, self.term_weights)
        if adv.num_groups and adv.nonfinite_groups / adv.num_groups > self.max_nonfinite_fraction:
            raise NonFiniteError(
                f"iteration {self.iteration}: {adv.nonfinite_groups} of {adv.num_groups} groups had non-finite "
                f"rewards or log-probs (max_nonfinite_fraction={self.max_nonfinite_fraction})"
            )
        metrics = self.update(rollout, control, adv)
        t2 = time.perf_counter()
        total = torch.nan_to_num(rollout["reward"].sum(dim=1), nan=float("nan"))  # [R]
        total = dist_utils.all_gather_cat(total)
        metrics.update(
            iteration=float(self.iteration),
            lr=float(self.optimizer.param_groups[0]["lr"]),
            reward_mean=float(total.nanmean()),
            reward_std=float(total[torch.isfinite(total)].std(correction=0)) if bool(torch.isfinite(total).any()) else float("nan"),
            nonfinite_groups=float(adv.nonfinite_groups),
            zero_variance_fraction=adv.zero_variance_groups / max(adv.num_groups, 1),
            time_collect=t1 - t0,
            time_update=t2 - t1,
        )
        if "reward_terms" in rollout.keys():
            for name, value in rollout["reward_terms"].items():
                metrics[f"reward/{name}"] = float(dist_utils.all_gather_cat(value.sum(dim=1)).nanmean())
        self.iteration += 1
        if self.checkpoint_dir is not None and self.iteration % self.checkpoint_every == 0:
            self.save_checkpoint()
        return metrics

    def _anneal(self) -> None:
        """Set this iteration's learning rates (a function of the iteration alone, so a resumed run gets the same)."""
        scale = 1.0 if self.anneal_iterations is None else max(0.0, 1.0 - self.iteration / self.anneal_iterations)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale

    def train(self, num_iterations: int, callback=None) -> list[dict[str, float]]:
        """Run until ``self.iteration == num_iterations`` (a resumed run continues where it stopped)."""
        history = []
        while self.iteration < num_iterations:
            metrics = self.step()
            history.append(metrics)
            if callback is not None:
                callback(metrics)
        return history

    # ------------------------------------------------------------------ checkpoints
    def trainable_state(self) -> dict[str, Tensor]:
        return {n: p for n, p in self.policy.named_parameters() if p.requires_grad}

    def save_checkpoint(self) -> Path | None:
        """Write full policy, optimizer, reference and RNG state atomically (call on every rank; rank 0 writes)."""
        if self.checkpoint_dir is None:
            raise ValueError("save_checkpoint needs checkpoint_dir")
        local_states = dist_utils.all_gather_cat(self.local_gen.get_state().unsqueeze(0))  # [world, L]
        policy_state = self.parallel.full_state(self.trainable_state().items())  # collective under FSDP2
        opt_state = self.parallel.full_optimizer_state(self.optimizer)
        if dist_utils.rank() != 0:
            return None
        if self.reference is not None and not (self.checkpoint_dir / "reference.safetensors").exists():
            ref = {n: p for n, p in self.reference.named_parameters()}
            save_tensors(self.checkpoint_dir / "reference.safetensors", ref)
        opt_tensors, opt_rest = optimizer_to_tensors(opt_state)
        rng = {"shared": self.shared_gen.get_state(), "local": local_states, "torch": torch.get_rng_state()}
        return write_checkpoint_dir(
            self.checkpoint_dir,
            self.iteration,
            {
                "policy.safetensors": policy_state,
                "optimizer.safetensors": opt_tensors,
                "optimizer.json": opt_rest,
                "rng.safetensors": rng,
                "trainer.json": {"iteration": self.iteration, "seed": self.seed, "world_size": dist_utils.world_size()},
            },
        )

    def resume(self) -> bool:
        """Load the newest checkpoint under ``checkpoint_dir`` if any; returns whether one was loaded."""
        if self.checkpoint_dir is None:
            return False
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            return False
        state = load_tensors(path / "policy.safetensors")
        own = self.trainable_state()
        if set(state) != set(own):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ValueError(f"checkpoint {path} does not match the policy: missing {missing[:5]}, unexpected {extra[:5]}")
        self.parallel.load_full_state(own.items(), state)
        opt_state = optimizer_state_from_tensors(load_tensors(path / "optimizer.safetensors"), load_json(path / "optimizer.json"))
        self.parallel.load_full_optimizer_state(self.optimizer, opt_state)
        if self.reference is not None and (self.checkpoint_dir / "reference.safetensors").exists():
            ref = load_tensors(self.checkpoint_dir / "reference.safetensors")
            with torch.no_grad():
                for name, p in self.reference.named_parameters():
                    p.copy_(ref[name])
        meta = load_json(path / "trainer.json")
        self.iteration = int(meta["iteration"])
        rng = load_tensors(path / "rng.safetensors")
        self.shared_gen.set_state(rng["shared"])
        if int(meta.get("world_size", 1)) == dist_utils.world_size():
            self.local_gen.set_state(rng["local"][dist_utils.rank()].clone())  # a copy: set_state ignores a view's storage offset
        else:  # another number of processes: fresh, distinct per-rank noise streams
            self.local_gen.manual_seed(self.seed + 1_000_003 * (dist_utils.rank() + 1) + 7919 * self.iteration)
        torch.set_rng_state(rng["torch"])
        return True
