"""``EnvCollector``: drives the batched env with a policy and records what GRPO needs.

Satisfies :class:`rldiff.protocols.Collector`. One ``collect`` call runs
``R = B * G`` episodes in lockstep through an
:class:`envs.ARVideoDenoisingVectorEnv` and returns the rollout TensorDict of
:mod:`rldiff.rollout` (built by :class:`rldiff.rollout.RolloutRecorder`):

- per stochastic step (``mask[m, n]`` True): ``("steps", "latent")`` the input
  latent ``x_{m,n}``, ``action`` ``x_{m,n+1}``, ``mean``, ``std``, ``log_prob``
  as the policy reported them when acting, ``frame``, ``step``, ``sigma``,
  ``sigma_next``;
- per frame: ``reward [R, F]`` and ``("reward_terms", name) [R, F]``;
- ``clean [R, F, C, H, W]`` the finished latents, ``group`` and
  ``control_index`` ``[R]`` (both ``b`` for row ``b * G + g``).

Deterministic steps leave no trace but the clean frames. Nothing holds a full
snapshot per step.

Blocks (an env built with ``frames_per_block = P > 1``): one decision moves a
block of ``P`` frames; the collector records it as ``P`` consecutive frame
steps (frame ``m + i``, the block's step, ``log_prob[:, i]`` of the policy's
``[R, P]``), so the rollout table, advantages and ``recompute`` stay per
frame. The mask is drawn over blocks (``schedule.mask(collector.num_blocks, N)``,
``[F/P, N]``) and expanded here; an ``[F, N]`` mask must be the same on the
frames of each block.
"""

from __future__ import annotations

import math
import warnings

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff.blocks import expand_block_mask, is_block_mask
from rldiff.rollout import RolloutRecorder
from rldiff.types import Control

from envs.spaces import policy_observation
from envs.vector_env import ARVideoDenoisingVectorEnv

__all__ = ["EnvCollector"]


class EnvCollector:
    """Runs rollouts of a policy in a :class:`ARVideoDenoisingVectorEnv`.

    Args:
        env: the vector env. A call with another ``R`` than ``env.num_envs``
            uses (and caches) ``env.resized(R)``, which shares the env's parts.
        shared_noise: the G rollouts of a group start from one initial noise
            (the env's ``shared_noise`` reset option), so they differ only in
            the stochastic actions. False: every rollout draws its own.

    ``collect(policy, control, group_size, mask, generator)``: ``control`` holds
    B rows; the env is reset with a seed drawn from ``generator`` (so the
    initial noise is reproducible from it), the policy with
    ``control.repeat_interleave(G)``; each step calls
    ``policy.act(obs, stochastic=bool(mask[m, n]), generator=generator)`` with
    the observation TensorDict ``[R]`` (keys of :mod:`envs.spaces`, scalars ``[R]``).

    A non-finite action (NaN or inf in a row of ``out["action"]``) is treated
    as the trainer treats a non-finite reward or log-prob (``compute_advantages``
    excludes the group, counts it, and the run stops past
    ``max_nonfinite_fraction``): the row is marked bad, a ``RuntimeWarning``
    names the policy's class, the frame m, the step n and the rows, the row's
    recorded ``log_prob`` at that step and its ``reward`` (and reward terms)
    from that frame on are NaN, so its group is excluded. The env, which
    rejects non-finite actions and runs all rows in lockstep, is sent the row's
    current latent ``x_{m,n}`` instead (recorded as the action); the other rows
    are untouched. A policy that is NaN everywhere thus ends the run through
    the trainer's non-finite limit, after the warnings named it.
    """

    def __init__(self, env: ARVideoDenoisingVectorEnv, shared_noise: bool = False):
        if not isinstance(env, ARVideoDenoisingVectorEnv):
            raise TypeError(f"env must be an envs.ARVideoDenoisingVectorEnv, got {type(env).__name__}")
        if not isinstance(shared_noise, bool):
            raise TypeError(f"shared_noise must be a bool, got {shared_noise!r}")
        self.env = env
        self.shared_noise = shared_noise
        self.num_frames = env.num_frames
        self.num_steps = env.num_steps
        self.frames_per_block = env.frames_per_block
        self.num_blocks = env.num_frames // env.frames_per_block
        self._envs: dict[int, ARVideoDenoisingVectorEnv] = {}

    def env_for(self, num_rows: int) -> ARVideoDenoisingVectorEnv:
        """The lean (no-copy) vector env with ``num_rows`` rows."""
        if num_rows not in self._envs:
            self._envs[num_rows] = self.env.resized(num_rows, copy_obs=False)
        return self._envs[num_rows]

    def collect(
        self,
        policy,
        control: Control,
        group_size: int,
        mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> TensorDict:
        f, n_steps, p = self.num_frames, self.num_steps, self.frames_per_block
        if isinstance(mask, Tensor) and p > 1 and tuple(mask.shape) == (self.num_blocks, n_steps):
            mask = expand_block_mask(mask, p)  # [F, N]
        if not isinstance(mask, Tensor) or tuple(mask.shape) != (f, n_steps) or mask.dtype != torch.bool:
            got = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
            blocks = f" (or [F/P, N] = {(self.num_blocks, n_steps)} over blocks)" if p > 1 else ""
            raise ValueError(f"mask must be a bool tensor [F, N] = {(f, n_steps)}{blocks}, got {got}")
        if not is_block_mask(mask, p):
            raise ValueError(
                f"mask [F, N] differs between frames of one block of frames_per_block = {p}: draw it over blocks, "
                f"schedule.mask(collector.num_blocks = {self.num_blocks}, N, generator)"
            )
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int (G rollouts per control), got {group_size!r}")
        r = len(control) * group_size
        env = self.env_for(r)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) % 2**32  # torch seeds its generators from 32 bits
        obs, _ = env.reset(seed=seed, options={"control": control, "group_size": group_size, "shared_noise": self.shared_noise})
        policy.reset(env.control)  # R rows, [B, G] order
        rows = torch.arange(r) // group_size  # [R]
        recorder = RolloutRecorder(group=rows, control_index=rows)
        stochastic = mask.tolist()
        sigmas = env.world.sigmas.tolist()
        if p > 1:
            return self._collect_blocks(policy, env, recorder, obs, stochastic, sigmas, generator)
        bad = torch.zeros(r, dtype=torch.bool)  # [R]: rows that got a non-finite action
        for m in range(f):
            for n in range(n_steps):
                sde = stochastic[m][n]
                latent = obs["snapshot"][:, m].clone() if sde else None  # [R, C, H, W]: x_{m,n}, overwritten by step
                out = policy.act(policy_observation(obs), stochastic=sde, generator=generator)
                action, log_prob = out["action"], out["log_prob"]
                nonfinite = _nonfinite_rows(action, env.world.latent_shape, r)  # [R] or None
                if nonfinite is not None:
                    bad |= nonfinite.cpu()
                    action, log_prob = _exclude_rows(policy, obs["snapshot"][:, m], action, log_prob, nonfinite, m, n)
                obs, reward, _, _, info = env.step(action)
                if sde:
                    recorder.record_step(m, n, sigmas[n], sigmas[n + 1], latent, action, out["mean"], out["std"], log_prob)
                if n == n_steps - 1:
                    terms = info["reward_terms"]
                    if bool(bad.any()):  # from the first bad frame on, the row's rewards are NaN: the trainer excludes its group
                        reward = reward.masked_fill(bad.to(reward.device), float("nan"))
                        terms = {k: v.masked_fill(bad.to(v.device), float("nan")) for k, v in terms.items()}
                    recorder.record_frame(action, reward, terms)
        return recorder.build()

    def _collect_blocks(self, policy, env, recorder: RolloutRecorder, obs, stochastic, sigmas, generator) -> TensorDict:
        """The block loop: one decision per (block, step), recorded as ``P`` frame steps and ``P`` finished frames."""
        p = self.frames_per_block
        for m in range(0, self.num_frames, p):
            for n in range(self.num_steps):
                sde = stochastic[m][n]
                latent = obs["snapshot"][:, m : m + p].clone() if sde else None  # [R, P, C, H, W]: x_{m,n}
                out = policy.act(policy_observation(obs), stochastic=sde, generator=generator)
                action = out["action"]  # [R, P, C, H, W]
                obs, _, _, _, info = env.step(action)
                if sde:
                    log_prob = out["log_prob"]  # [R, P]
                    for i in range(p):
                        recorder.record_step(
                            m + i, n, sigmas[n], sigmas[n + 1], latent[:, i], action[:, i], out["mean"][:, i], out["std"], log_prob[:, i]
                        )
                if n == self.num_steps - 1:
                    for i in range(p):
                        terms = {k: v[:, i] for k, v in info["frame_reward_terms"].items()}
                        recorder.record_frame(action[:, i], info["frame_rewards"][:, i], terms)
        return recorder.build()


def _nonfinite_rows(action, latent_shape: tuple[int, ...], r: int) -> Tensor | None:
    """``[R]`` bool of the rows of ``action [R, C, H, W]`` holding NaN or inf, or None when all are finite (a cheap check first)."""
    if not isinstance(action, Tensor) or not torch.is_floating_point(action) or tuple(action.shape) != (r, *latent_shape):
        return None  # not a float tensor of the action shape: the env's check_action names what is wrong
    lo, hi = torch.aminmax(action)
    if math.isfinite(lo.item()) and math.isfinite(hi.item()):
        return None
    return ~torch.isfinite(action.flatten(1)).all(dim=1)  # [R]


def _exclude_rows(policy, current: Tensor, action: Tensor, log_prob: Tensor, rows: Tensor, m: int, n: int) -> tuple[Tensor, Tensor]:
    """Warn naming the policy and (m, n); the rows' action becomes their current latent, their log-prob NaN."""
    warnings.warn(
        f"EnvCollector: {type(policy).__name__}.act returned a non-finite action (NaN or inf) at frame m={m}, "
        f"step n={n} for rows {rows.nonzero().flatten().tolist()}; their rewards are recorded as NaN so the "
        "trainer excludes their groups (and stops past max_nonfinite_fraction)",
        RuntimeWarning,
        stacklevel=3,
    )
    keep = rows.to(action.device).view(-1, *([1] * (action.dim() - 1)))  # [R, 1, 1, 1]
    action = torch.where(keep, current.to(device=action.device, dtype=action.dtype), action)  # [R, C, H, W]
    log_prob = log_prob.masked_fill(rows.to(log_prob.device), float("nan"))  # [R]
    return action, log_prob
