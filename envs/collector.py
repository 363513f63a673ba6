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
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        r = len(control) * group_size
        env = self.env_for(r)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        obs, _ = env.reset(seed=seed, options={"control": control, "group_size": group_size, "shared_noise": self.shared_noise})
        policy.reset(env.control)  # R rows, [B, G] order
        rows = torch.arange(r) // group_size  # [R]
        recorder = RolloutRecorder(group=rows, control_index=rows)
        stochastic = mask.tolist()
        sigmas = env.world.sigmas.tolist()
        if p > 1:
            return self._collect_blocks(policy, env, recorder, obs, stochastic, sigmas, generator)
        for m in range(f):
            for n in range(n_steps):
                sde = stochastic[m][n]
                latent = obs["snapshot"][:, m].clone() if sde else None  # [R, C, H, W]: x_{m,n}, overwritten by step
                out = policy.act(policy_observation(obs), stochastic=sde, generator=generator)
                action = out["action"]
                obs, reward, _, _, info = env.step(action)
                if sde:
                    recorder.record_step(
                        m, n, sigmas[n], sigmas[n + 1], latent, action, out["mean"], out["std"], out["log_prob"]
                    )
                if n == n_steps - 1:
                    recorder.record_frame(action, reward, info["reward_terms"])
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
