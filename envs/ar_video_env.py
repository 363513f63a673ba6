"""``ARVideoDenoisingEnv``: autoregressive video denoising as a Gymnasium environment.

One episode generates one video of F latent frames, N denoising decisions per
frame (horizon F*N). The agent's action is the next latent of the current
frame; transitions are deterministic; a frame's reward arrives on the step
that finishes it. See :mod:`envs.spaces` for the observation table and
ARCHITECTURE.md ("The MDP") for the formulation.

Torch tensors inside (actions may also be numpy arrays, as torchrl's
``GymEnv`` sends them). The numpy face for Gymnasium's checker is
``gymnasium.wrappers.ArrayConversion(env, env_xp=torch, target_xp=numpy)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

from envs.core import EnvFace, Episodes, World, check_action, check_options, check_seed, draw_noise, row_generators
from envs.parts import DEFAULT_CODEC, DEFAULT_CONTROLS, DEFAULT_REWARD
from envs.spaces import action_space, control_observation, observation_space, observe

__all__ = ["ARVideoDenoisingEnv"]

_OPTION_KEYS = {"control"}


class ARVideoDenoisingEnv(EnvFace, gym.Env):
    """The AR video denoising MDP for one video at a time.

    Args:
        control_source: a ``rldiff.protocols.ControlSource`` or a ``_target_`` config of one.
        codec: a ``rldiff.protocols.Codec`` or a ``_target_`` config (decodes finished frames).
        reward: a streaming ``rldiff.protocols.Reward`` or a ``_target_`` config.
        num_steps: N denoising steps per latent frame.
        shift: timestep shift of the sigma schedule ``rldiff.flow.shifted_sigmas(N, shift)``.
        device: where the snapshot lives and the codec and reward run.
        frames_per_block: P latent frames per decision (default 1; 3 for the public
            Self-Forcing / LongLive / CausVid students): the action is then ``[P, C, H, W]``.

    The number of latent frames F, the latent shape and the control shapes are
    read off the codec and one probe control (``control_source.sample(1)`` with seed 0).

    ``reset(seed, options)``: the episode's generator is seeded with ``seed``
    (any non-negative int, as Gymnasium's seeding takes; distinct seeds give
    distinct episodes, see :func:`envs.core.seeded_generator`), or continues,
    or is seeded from ``np_random`` the first time; ``options`` is a dict or None. It draws
    the initial noise ``[F, C, H, W]`` first, then the control unless
    ``options["control"]`` (a one-row ``Control``) imposes it.

    ``step(action)`` stores the action detached (no autograd graph enters the env) and returns ``(obs, reward, terminated, truncated, info)``:
    ``reward`` is 0.0 except on a frame's last step; then ``info`` holds
    ``"frame"`` (m) and ``"reward_terms"`` ``{name: float}``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        control_source=DEFAULT_CONTROLS,
        codec=DEFAULT_CODEC,
        reward=DEFAULT_REWARD,
        *,
        num_steps: int = 3,
        shift: float = 1.0,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        frames_per_block: int = 1,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode: this env renders nothing, got {render_mode!r}")
        self.world = World.build(control_source, codec, reward, num_steps, shift, device, frames_per_block=frames_per_block)
        self.observation_space = observation_space(self.world)
        self.action_space = action_space(self.world)
        self._episodes = Episodes(self.world)
        self._controls: dict[str, Tensor] = {}
        self._generator: torch.Generator | None = None

    @property
    def snapshot(self) -> Tensor | None:
        """The current snapshot ``[F, C, H, W]`` (the env's own tensor: do not modify)."""
        s = self._episodes.snapshot
        return None if s is None else s[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._check_open()
        seed = None if seed is None else check_seed(seed)
        super().reset(seed=seed)
        options = check_options(options, _OPTION_KEYS)
        if seed is not None:
            self._generator = row_generators([seed])[0]
        elif self._generator is None:
            self._generator = row_generators([int(self.np_random.integers(2**63 - 1))])[0]
        noise = draw_noise([self._generator], self.world.snapshot_shape)  # [1, F, C, H, W]
        control = options.get("control")
        if control is None:
            control = self.world.control_source.sample(1, self._generator)
        control = self.world.check_control(control, rows=1)
        self._episodes.start(control, noise)
        self._controls = control_observation(control)
        return self._observe(), {}

    def step(self, action):
        self._check_open()
        if self._episodes.snapshot is None:
            raise RuntimeError("step() called before reset()")
        action = check_action(action, self.world.action_shape)
        result = self._episodes.advance(action.to(self.world.device)[None])
        info: dict[str, Any] = {}
        reward = 0.0
        if result is not None:
            reward = float(result.reward[0])
            info = {"frame": result.frame, "reward_terms": {k: float(v[0]) for k, v in result.terms.items()}}
            if self.world.frames_per_block > 1:
                info["frame_rewards"] = result.frame_rewards[0].tolist()
        return self._observe(), reward, self._episodes.done, False, info

    def _observe(self) -> dict[str, Tensor]:
        obs = observe(self._episodes, self._controls, copy=True)
        return {k: v[0] for k, v in obs.items()}  # fresh tensors, row 0
