"""A generic GRPO trainer for flow-matching policies: collect -> advantages -> update -> log.

Works for any policy satisfying :class:`rldiff.protocols.RolloutPolicy`, any
collector satisfying :class:`rldiff.protocols.Collector` (an env-driven video
rollout, the toy 2-D sampler, ...), any control source, stochasticity schedule
and advantage estimator. One iteration (:meth:`GRPOTrainer.step`):

    collect:    B controls and a [F, N] mask (shared generator) -> R = B*G rollouts (this rank: G / world each)
    advantages: per-frame rewards [R, F] -> the estimator's group-normalized advantages (gathered over ranks)
    update:     epochs x minibatches (each backward in micro-batches): recompute means (with grad) -> log-probs
                -> grpo_loss (+ KL) -> clip -> step
    log:        the metrics of the iteration; the lr schedule steps; a checkpoint when due

The variants are objects passed in: the schedule (:mod:`rldiff.stochasticity`),
the advantage estimator (:mod:`rldiff.advantages`), the learning-rate schedule
(any ``torch.optim.lr_scheduler``, built from the optimizer by ``lr_schedule``),
the gradient synchronization (:mod:`rldiff.parallel`; FSDP2's ``param_dtype`` is its
mixed precision), the KL reference. Compute precision belongs to the policy
(``policies.FlowPolicy(compute_dtype=...)``): weights and optimizer state stay
float32 here whatever it is. Checkpoints go through
:class:`rldiff.run_state.RunState` and hold full (unsharded) tensors, so they
load into a run with any number of processes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff import distributed as dist_utils
from rldiff.advantages import AdvantageEstimator, Advantages, GroupAdvantage, compute_advantages
from rldiff.flow import gaussian_log_prob
from rldiff.grpo import grpo_loss
from rldiff.parallel import ManualAllReduce
from rldiff.rollout import step_advantages
from rldiff.run_state import RunState
from rldiff.stochasticity import StochasticitySchedule
from rldiff.trainer_args import check_trainer_args

__all__ = ["GRPOTrainer", "Advantages", "compute_advantages", "NonFiniteError"]

LOCAL_SEED_OFFSET = 1  # the trainer's noise stream on rank k is seeded rank_seed(seed, k + 1)


class NonFiniteError(RuntimeError):
    """Too many groups had non-finite rewards or log-probs, or too many updates were skipped."""


class GRPOTrainer:
    """Group Relative Policy Optimization for flow-matching policies (see module docstring).

    Args:
        policy: an ``nn.Module`` with ``recompute(rollout, control) -> mean [R, S, ...]``.
        collector: produces rollout TensorDicts (``rldiff.rollout`` layout).
        controls: a control source with ``sample(batch_size, generator)``.
        schedule: which (frame, step) pairs are stochastic.
        advantage: the advantage estimator (default :class:`~rldiff.advantages.GroupAdvantage`).
        lr: AdamW learning rate (ignored when ``optimizer`` is given).
        optimizer: a ready optimizer over the policy's trainable parameters (not with
            FSDP2, which replaces the parameters: pass ``lr`` instead).
        lr_schedule: ``optimizer -> torch.optim.lr_scheduler.LRScheduler`` (e.g.
            ``functools.partial(LinearLR, start_factor=1.0, end_factor=0.0, total_iters=150)``),
            stepped once per iteration and checkpointed; ``None``: constant.
        num_controls: B, controls per iteration.
        group_size: G, rollouts per control (split evenly over ranks).
        gamma: reward-to-go discount over frames (0: per-frame reward).
        clip_range: PPO clip epsilon (tiny: log-probs are per-dim averages).
        adv_clip: advantages are clamped to ``[-adv_clip, adv_clip]``.
        kl_coef: weight of the closed-form KL to the frozen reference (>= 0).
        epochs: passes over the collected batch per iteration.
        minibatch_size: rollouts per optimizer step (``None``: all local rollouts).
        micro_batch_size: rollouts per forward/backward (``None``: the whole minibatch); a
            micro-batch's loss is weighted by its share of the minibatch's valid steps, so the
            accumulated gradient is the minibatch loss's (gradient accumulation).
        max_grad_norm: gradient-norm clip.
        max_nonfinite_fraction: stop with :class:`NonFiniteError` when a larger
            fraction of the iteration's groups had non-finite rewards/log-probs, or
            of its updates were skipped for non-finite log-probs or gradients.
        norm_eps: epsilon of the group normalization.
        seed: seeds the shared (controls, masks) and per-rank (noise) generators.
        checkpoint_dir: where checkpoints go (``None``: no checkpoints).
        checkpoint_every: iterations between checkpoints.
        reference: the KL reference: a frozen module with ``recompute`` (default: a deep copy of
            the policy at construction, made only when ``kl_coef > 0``; replicated on every rank),
            or an object with ``policy_context()``: the policy itself run in that context (LoRA:
            ``policies.lora.BaseReference``, adapters off; no copy).
        parallel: how gradients are synchronized across ranks (default
            :class:`~rldiff.parallel.ManualAllReduce`).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        collector,
        controls,
        schedule: StochasticitySchedule,
        *,
        advantage: AdvantageEstimator | None = None,
        lr: float = 1e-5,
        optimizer: torch.optim.Optimizer | None = None,
        lr_schedule: Callable[[torch.optim.Optimizer], object] | None = None,
        num_controls: int = 2,
        group_size: int = 4,
        gamma: float = 0.0,
        clip_range: float = 1e-3,
        adv_clip: float = 5.0,
        kl_coef: float = 0.0,
        epochs: int = 1,
        minibatch_size: int | None = None,
        micro_batch_size: int | None = None,
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
        check_trainer_args(
            world=world, num_controls=num_controls, group_size=group_size, epochs=epochs, checkpoint_every=checkpoint_every, minibatch_size=minibatch_size,
            micro_batch_size=micro_batch_size, lr=lr, clip_range=clip_range, adv_clip=adv_clip, max_grad_norm=max_grad_norm, norm_eps=norm_eps,
            kl_coef=kl_coef, gamma=gamma, max_nonfinite_fraction=max_nonfinite_fraction,
        )  # fmt: skip
        self.policy, self.collector, self.controls, self.schedule = policy, collector, controls, schedule
        self.advantage = advantage if advantage is not None else GroupAdvantage()
        self.num_controls, self.group_size, self.local_group_size = num_controls, group_size, group_size // world
        self.gamma, self.clip_range, self.adv_clip, self.kl_coef = gamma, clip_range, adv_clip, kl_coef
        self.epochs, self.minibatch_size, self.micro_batch_size, self.max_grad_norm = epochs, minibatch_size, micro_batch_size, max_grad_norm
        self.max_nonfinite_fraction, self.norm_eps = max_nonfinite_fraction, norm_eps
        self.seed, self.checkpoint_every = seed, checkpoint_every
        self.reference = reference
        if kl_coef > 0 and reference is None:
            self.reference = copy.deepcopy(policy).requires_grad_(False).eval()
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        self.runner = self.parallel.wrap(policy)  # runner(rollout, control) -> means; may shard the policy
        self.params = [p for p in policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("GRPOTrainer: policy has no trainable parameters")
        if optimizer is not None:
            own = {id(p) for p in self.params}
            if any(id(p) not in own for g in optimizer.param_groups for p in g["params"]):
                raise ValueError("GRPOTrainer: optimizer must hold the policy's trainable parameters as they are after parallel.wrap (FSDP2 replaces them: pass lr instead)")
        self.optimizer = optimizer or torch.optim.AdamW(self.params, lr=lr)
        self.lr_scheduler = lr_schedule(self.optimizer) if lr_schedule is not None else None
        self.shared_gen = torch.Generator().manual_seed(seed)
        local_seed = dist_utils.rank_seed(seed, dist_utils.rank() + LOCAL_SEED_OFFSET)
        self.local_gen = torch.Generator().manual_seed(local_seed)
        self.run_state = None
        if checkpoint_dir is not None:
            self.run_state = RunState(
                checkpoint_dir, modules={"policy": policy}, optimizers={"policy": self.optimizer},
                schedulers={"lr": self.lr_scheduler} if self.lr_scheduler is not None else {},
                shared_generators={"shared": self.shared_gen}, local_generators={"local": (self.local_gen, local_seed)},
                frozen={"reference": self.reference} if isinstance(self.reference, torch.nn.Module) else {}, parallel=self.parallel, seed=seed,
            )  # fmt: skip
        self.iteration = 0

    # ------------------------------------------------------------------ collect
    def collect(self) -> tuple[TensorDict, object]:
        """Draw controls and a mask, then collect this rank's rollouts (no gradients)."""
        control = self.controls.sample(self.num_controls, generator=self.shared_gen)
        num_blocks = getattr(self.collector, "num_blocks", self.collector.num_frames)  # blocks of frames sharing a timestep (1 frame each by default)
        mask = self.schedule.mask(num_blocks, self.collector.num_steps, self.shared_gen, iteration=self.iteration)  # [F/P, N]: the collector expands it
        return self.rollout(control, self.local_group_size, mask, self.local_gen), control

    def rollout(self, control, group_size: int, mask: Tensor, generator: torch.Generator | None = None) -> TensorDict:
        """No-grad rollouts of the current policy through the strategy's runner (what evaluation calls too)."""
        return self.parallel.runner_module(self.runner).collect(self.collector, control, group_size, mask, generator)

    # ------------------------------------------------------------------ update
    def _minibatches(self, num_rows: int) -> list[Tensor]:
        size = self.minibatch_size or num_rows
        order = torch.randperm(num_rows, generator=self.local_gen)
        return [order[i : i + size] for i in range(0, num_rows, size)]

    def _loss(self, mb: TensorDict, control, adv: Tensor, valid: Tensor) -> dict[str, Tensor] | None:
        """The GRPO loss of one minibatch; ``{}`` when it has no valid step, ``None`` when its log-probs are non-finite."""
        steps = mb["steps"]
        sel = valid.unsqueeze(1).expand(steps.batch_size).reshape(-1)  # [r*S]
        if not bool(sel.any()):
            return {}
        mb_control = control.index(mb["control_index"])
        mean = self.runner(mb, mb_control).flatten(0, 1)[sel]  # [s, ...]
        std = steps["std"].flatten()[sel]  # [s]
        log_prob = gaussian_log_prob(steps["action"].flatten(0, 1)[sel], mean, std)  # [s]
        if not bool(torch.isfinite(log_prob).all()):
            return None
        ref_mean = None
        if self.kl_coef > 0:
            with torch.no_grad():
                if hasattr(self.reference, "policy_context"):  # the policy itself, e.g. with its adapters off
                    with self.reference.policy_context():
                        ref_mean = self.runner(mb, mb_control).flatten(0, 1)[sel]  # [s, ...]
                else:
                    ref_mean = self.reference.recompute(mb, mb_control).flatten(0, 1)[sel]  # [s, ...]
        return grpo_loss(log_prob, steps["log_prob"].flatten()[sel], adv.flatten()[sel], self.clip_range, mean=mean, ref_mean=ref_mean, std=std, kl_coef=self.kl_coef)

    def _accumulate(self, rollout: TensorDict, control, step_adv: Tensor, valid: Tensor, idx: Tensor) -> dict[str, Tensor] | None:
        """Backward of minibatch ``idx`` in micro-batches; returns its (weighted) loss dict, ``{}`` if nothing was valid, ``None`` if non-finite.

        A micro-batch's loss is a mean over its valid steps, so it is weighted by
        ``valid steps in it / valid steps in the minibatch``: the weighted sum is the
        minibatch's loss and so is the accumulated gradient.
        """
        size = self.micro_batch_size or len(idx)
        total = max(int(valid[idx].sum()), 1)
        sums: dict[str, Tensor] = {}
        for start in range(0, len(idx), size):
            mi = idx[start : start + size]
            out = self._loss(rollout[mi], control, step_adv[mi], valid[mi])
            if dist_utils.any_flag(out is None):
                return None
            if dist_utils.any_flag(not out):  # nothing valid in this micro-batch on some rank: every rank skips it
                continue
            weight = int(valid[mi].sum()) / total
            (out["loss"] * weight).backward()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + weight * v.detach()
        return sums

    def update(self, rollout: TensorDict, control, adv: Advantages) -> dict[str, float]:
        """Epochs of minibatch GRPO updates on one collected batch."""
        step_adv = step_advantages(adv.frame, rollout["steps", "frame"])  # [R, S]
        sums: dict[str, float] = {}
        count, skipped, first_ratio = 0, 0, float("nan")
        for _ in range(self.epochs):
            for idx in self._minibatches(rollout.shape[0]):
                out = self._accumulate(rollout, control, step_adv, adv.valid, idx)
                if out is None:  # non-finite log-probs on some rank: every rank skips
                    skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                if not out:  # nothing valid to learn from
                    continue
                self.parallel.after_backward(self.params)
                grad_norm = self.parallel.clip_grad_norm(self.params, self.max_grad_norm)
                if dist_utils.any_flag(not bool(torch.isfinite(grad_norm))):
                    skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                first_ratio = float(out["ratio_mean"]) if math.isnan(first_ratio) else first_ratio
                for k, v in {**out, "grad_norm": grad_norm}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                count += 1
        metrics = {k: v / max(count, 1) for k, v in sums.items()}
        metrics.update(updates=float(count), skipped_updates=float(skipped), ratio_mean_first=first_ratio)
        return metrics

    # ------------------------------------------------------------------ iterate
    def step(self) -> dict[str, float]:
        """One GRPO iteration: collect -> advantages -> update -> log; returns its metrics (and checkpoints when due)."""
        t0 = time.perf_counter()
        rollout, control = self.collect()
        t1 = time.perf_counter()
        adv = compute_advantages(rollout, self.gamma, self.norm_eps, self.adv_clip, self.advantage)
        self._check_nonfinite(adv.nonfinite_groups, adv.num_groups, "groups had non-finite rewards or log-probs")
        lr = float(self.optimizer.param_groups[0]["lr"])
        metrics = self.update(rollout, control, adv)
        self._check_nonfinite(metrics["skipped_updates"], metrics["skipped_updates"] + metrics["updates"], "updates were skipped for non-finite recomputed log-probs or gradients")
        metrics.update(self.log(rollout, adv), iteration=float(self.iteration), lr=lr, time_collect=t1 - t0, time_update=time.perf_counter() - t1)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        self.iteration += 1
        if self.run_state is not None and self.iteration % self.checkpoint_every == 0:
            self.save_checkpoint()
        return metrics

    def _check_nonfinite(self, bad: float, total: float, what: str) -> None:
        if total and bad / total > self.max_nonfinite_fraction:
            raise NonFiniteError(
                f"iteration {self.iteration}: {int(bad)} of {int(total)} {what} (max_nonfinite_fraction={self.max_nonfinite_fraction}); "
                "the policy or the reward produces NaN/inf: lower the lr, check the reward, or resume from an earlier checkpoint"
            )

    def log(self, rollout: TensorDict, adv: Advantages) -> dict[str, float]:
        """Reward statistics of the collected batch (gathered over ranks)."""
        total = dist_utils.all_gather_cat(rollout["reward"].sum(dim=1))  # [R_all]
        finite = total[torch.isfinite(total)]
        metrics = {
            "reward_mean": float(finite.mean()) if finite.numel() else float("nan"),
            "reward_std": float(finite.std(correction=0)) if finite.numel() else float("nan"),
            "nonfinite_groups": float(adv.nonfinite_groups),
            "zero_variance_fraction": adv.zero_variance_groups / max(adv.num_groups, 1),
        }
        if "reward_terms" in rollout.keys():
            for name, value in rollout["reward_terms"].items():
                metrics[f"reward/{name}"] = float(dist_utils.all_gather_cat(value.sum(dim=1)).nanmean())
        return metrics

    def train(self, num_iterations: int, callback=None) -> list[dict[str, float]]:
        """Run until ``self.iteration == num_iterations`` (a resumed run continues where it stopped)."""
        history = []
        while self.iteration < num_iterations:
            history.append(self.step())
            if callback is not None:
                callback(history[-1])
        return history

    # ------------------------------------------------------------------ checkpoints
    def trainable_state(self) -> dict[str, Tensor]:
        """The policy's trainable parameters by name (sharded under FSDP2: ``parallel.full_state`` gathers them)."""
        return {n: p for n, p in self.policy.named_parameters() if p.requires_grad}

    def save_checkpoint(self) -> Path | None:
        """Write policy, optimizer, lr schedule, reference and RNG state atomically (every rank calls; rank 0 writes)."""
        if self.run_state is None:
            raise ValueError("GRPOTrainer.save_checkpoint needs checkpoint_dir")
        return self.run_state.save(self.iteration)

    def resume(self) -> bool:
        """Load the newest checkpoint under ``checkpoint_dir`` if any; returns whether one was loaded."""
        state = self.run_state.resume() if self.run_state is not None else None
        if state is None:
            return False
        self.iteration = int(state["iteration"])
        return True
