"""``ARVideoDenoisingVectorEnv``: R = B * G episodes of the AR denoising MDP in one tensor batch.

All rows advance in lockstep (every episode has the same horizon F*N), so the
env is natively batched: one policy call, one decode and one reward call per
step for all rows. ``gymnasium.make_vec("rldiff/ARVideoDenoising-v0",
num_envs=R, vectorization_mode="vector_entry_point")`` builds it.

Seeds and rows. ``reset(seed=s)`` seeds row ``r``'s generator with ``s + r``
(``seed`` may also be a list of R ints, row r gets ``seed[r]``; every seed is a
non-negative int of any size, Gymnasium's rule, else an error); without a seed
the generators continue. Row ``r`` draws its initial noise ``[F, C, H, W]``
first. Without ``options["control"]``, group ``b`` (rows ``b*G .. b*G+G-1``)
gets ``control_source.sample(1, generator of row b*G)``, drawn after that
row's noise. Hence row ``r`` equals a single :class:`ARVideoDenoisingEnv`
reset with seed ``s + r`` and the same control (and with G = 1 and drawn
controls, simply the single env with seed ``s + r``).

``options["shared_noise"] = True`` starts every row of group ``b`` from row
``b*G``'s initial noise (the other rows' generators draw none): the G
rollouts of a group then differ only in the policy's stochastic actions, which
is what GRPO credits (DanceGRPO shares the initial noise within a group).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from rldiff.types import Control

from envs.core import EnvFace, Episodes, World, check_action, check_options, check_seed, draw_noise, row_generators
from envs.parts import DEFAULT_CODEC, DEFAULT_CONTROLS, DEFAULT_REWARD
from envs.spaces import action_space, control_observation, observation_space, observe

__all__ = ["ARVideoDenoisingVectorEnv"]

_OPTION_KEYS = {"control", "group_size", "reset_mask", "shared_noise"}


class ARVideoDenoisingVectorEnv(EnvFace, VectorEnv):
    """``num_envs = R`` rollouts laid out as ``[B, G]`` (row ``b * G + g``).

    Args:
        num_envs: R rows.
        control_source, codec, reward, num_steps, shift, device: as for
            :class:`envs.ARVideoDenoisingEnv`.
        group_size: default G (rollouts per control); ``reset(options={"group_size": G})`` overrides it.
        copy_obs: return fresh observation tensors (default). ``False`` returns
            the env's own snapshot and control tensors, valid until the next
            ``step``/``reset`` (the collector's lean path).
        frames_per_block: P latent frames per decision (default 1): actions are then
            ``[R, P, C, H, W]`` and a finished block's ``info`` also holds
            ``"frame_rewards" [R, P]`` and ``"frame_reward_terms" {name: [R, P]}``.

    ``reset(seed, options)``: ``options["control"]`` is a ``Control`` of
    ``B = R / G`` rows; ``options["shared_noise"]`` (default False) gives the
    rows of a group one initial noise; ``options["reset_mask"]`` (sent by torchrl) must be
    all-True or all-False since rows run in lockstep. ``step(actions [R, C, H, W])``
    returns rewards ``[R]`` (0 except on a frame's last step, where ``info``
    holds ``"frame"`` and ``"reward_terms"`` ``{name: [R]}``), terminations
    ``[R]`` bool and truncations ``[R]`` bool. Autoreset is disabled: after the
    last frame call ``reset``.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}
    autoreset_mode = AutoresetMode.DISABLED

    def __init__(
        self,
        num_envs: int = 1,
        control_source=DEFAULT_CONTROLS,
        codec=DEFAULT_CODEC,
        reward=DEFAULT_REWARD,
        *,
        num_steps: int = 3,
        shift: float = 1.0,
        device: str | torch.device = "cpu",
        group_size: int = 1,
        copy_obs: bool = True,
        world: World | None = None,
        render_mode: str | None = None,
        frames_per_block: int = 1,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int (R = B * G rows: controls times group size), got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(f"render_mode: this env renders nothing, got {render_mode!r}")
        self.world = world if world is not None else World.build(control_source, codec, reward, num_steps, shift, device, frames_per_block=frames_per_block)
        self._owns_world = world is None
        self.num_envs = num_envs
        self.group_size = self._check_group_size(group_size)
        self.copy_obs = copy_obs
        self.single_observation_space = observation_space(self.world)
        self.single_action_space = action_space(self.world)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._episodes = Episodes(self.world)
        self._controls: dict[str, Tensor] = {}
        self._generators: list[torch.Generator] | None = None
        self._action_shape = (num_envs, *self.world.action_shape)
        self._zeros = torch.zeros(num_envs, device=self.world.device)
        self._false = torch.zeros(num_envs, dtype=torch.bool, device=self.world.device)

    def resized(self, num_envs: int, copy_obs: bool | None = None) -> "ARVideoDenoisingVectorEnv":
        """A vector env of ``num_envs`` rows over the same parts (no new instantiation)."""
        return ARVideoDenoisingVectorEnv(
            num_envs,
            world=self.world,
            group_size=1,
            copy_obs=self.copy_obs if copy_obs is None else copy_obs,
        )

    @property
    def snapshot(self) -> Tensor | None:
        """The current snapshot ``[R, F, C, H, W]`` (the env's own tensor: do not modify)."""
        return self._episodes.snapshot

    def _check_group_size(self, group_size) -> int:
        if not isinstance(group_size, int) or group_size < 1 or self.num_envs % group_size:
            raise ValueError(f"group_size must be a positive int dividing num_envs={self.num_envs}, got {group_size!r}")
        return group_size

    def _check_reset_mask(self, mask) -> np.ndarray:
        """``options["reset_mask"]`` as ``[R]`` bool; raises unless it holds one bool per row."""
        values = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        if values.dtype != np.bool_ or values.size != self.num_envs or values.ndim not in (1, 2) or values.shape[0] != self.num_envs:
            raise ValueError(
                f"options['reset_mask'] must hold one bool per row, shape [R={self.num_envs}] (or [R, 1]), "
                f"got {mask!r:.200} (shape {values.shape}, dtype {values.dtype})"
            )
        return values.reshape(-1)

    def _seed_rows(self, seed) -> None:
        r = self.num_envs
        if isinstance(seed, (list, tuple, np.ndarray)):
            if len(seed) != r or any(s is None for s in seed):
                raise ValueError(f"seed: a list of seeds needs one int per row (R={r}), got {list(seed)}")
            seeds = [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
            super().reset(seed=seeds[0])
            self._generators = row_generators(seeds)
        elif seed is not None:
            seed = check_seed(seed)
            super().reset(seed=seed)
            self._generators = row_generators([seed + i for i in range(r)])
        elif self._generators is None:
            base = int(self.np_random.integers(2**62))
            self._generators = row_generators([base + i for i in range(r)])

    def reset(self, *, seed=None, options: dict[str, Any] | None = None):
        self._check_open()
        options = check_options(options, _OPTION_KEYS)
        mask = options.pop("reset_mask", None)
        if mask is not None:
            mask = self._check_reset_mask(mask)
            if not mask.any() and self._episodes.snapshot is not None:
                return self._observe(), {}
            if not mask.all():
                raise ValueError("reset_mask: rows run in lockstep, so a partial reset is not supported; reset all rows")
        group_size = self._check_group_size(options.get("group_size", self.group_size))
        shared = options.get("shared_noise", False)
        if not isinstance(shared, bool):
            raise ValueError(f"options['shared_noise'] must be a bool, got {shared!r}")
        self._seed_rows(seed)
        if shared:  # row b*G draws, the group repeats it
            noise = draw_noise(self._generators[::group_size], self.world.snapshot_shape).repeat_interleave(group_size, dim=0)
        else:
            noise = draw_noise(self._generators, self.world.snapshot_shape)  # [R, F, C, H, W]
        num_controls = self.num_envs // group_size
        control = options.get("control")
        if control is None:
            drawn = [self.world.control_source.sample(1, self._generators[b * group_size]) for b in range(num_controls)]
            control = Control.cat(drawn)
        control = self.world.check_control(control, rows=num_controls).repeat_interleave(group_size)  # R rows
        self._episodes.start(control, noise)
        self._controls = control_observation(control)
        return self._observe(), {}

    def step(self, actions):
        self._check_open()
        if self._episodes.snapshot is None:
            raise RuntimeError("step() called before reset()")
        actions = check_action(actions, self._action_shape, "actions")
        result = self._episodes.advance(actions.to(self.world.device))
        info: dict[str, Any] = {}
        reward = self._zeros
        if result is not None:
            reward = result.reward
            info = {"frame": result.frame, "reward_terms": result.terms, "frame_rewards": result.frame_rewards, "frame_reward_terms": result.frame_terms}
        terminated = torch.full_like(self._false, self._episodes.done)
        return self._observe(), reward.clone(), terminated, self._false.clone(), info

    def _observe(self) -> dict[str, Tensor]:
        return observe(self._episodes, self._controls, copy=self.copy_obs)
