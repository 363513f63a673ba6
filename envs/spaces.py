"""Declared spaces and observations of the AR denoising env.

Observation (a ``Dict``; single env shapes, the vector env prepends ``R``):

==================  ==================  =======  ==============================================
key                 shape               dtype    meaning
==================  ==================  =======  ==============================================
``snapshot``        [F, C, H, W]        float32  x_{<m,N} | x_{m,n} | x_{>m,0}
``frame_index``     [1]                 int64    m in [0, F-1] (blocks: the block's first frame)
``step_index``      [1]                 int64    n in [0, N] (N only in the terminal state)
``sigma``           [1]                 float32  sigma_n
``sigma_next``      [1]                 float32  sigma_{n+1} (0 in the terminal state)
``timestep``        [1]                 float32  1000 * sigma_n (Wan timesteps)
``trajectory``      [T, K, 2]           float32  the control's tracks, normalized (x, y)
``visibility``      [T, K]              int64    1 where the track point is visible
``reference``       [3, H_px, W_px]     float32  the control's first frame in [0, 1]
==================  ==================  =======  ==============================================

Action: ``Box [C, H, W] float32``, the next latent ``x_{m,n+1}`` of the current frame
(``Box [P, C, H, W]``, the current block's, when the env has ``frames_per_block = P > 1``).

Scalars are declared ``[1]`` (vector env: ``[R, 1]``) because torchrl's
``GymEnv`` turns a gymnasium ``Box`` of shape ``()`` into a spec of shape
``(1,)``; a policy takes the observation as a TensorDict ``[R]`` with scalars
``[R]`` (``rldiff.protocols.Policy``): :func:`policy_observation` converts.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict
from torch import Tensor

from rldiff.types import Control

from envs.core import Episodes, World

__all__ = ["observation_space", "action_space", "CONTROL_KEYS", "SCALAR_KEYS", "control_observation", "observe", "policy_observation"]

CONTROL_KEYS = ("trajectory", "visibility", "reference")
SCALAR_KEYS = ("frame_index", "step_index", "sigma", "sigma_next", "timestep")


def _scalar(low: float, high: float, dtype) -> spaces.Box:
    return spaces.Box(low=np.full((1,), low, dtype=dtype), high=np.full((1,), high, dtype=dtype), shape=(1,), dtype=dtype)


def observation_space(world: World) -> spaces.Dict:
    """The single-env observation space of ``world`` (see the module table)."""
    t, k = world.num_pixel_frames, world.num_tracks
    return spaces.Dict(
        {
            "snapshot": spaces.Box(-np.inf, np.inf, shape=world.snapshot_shape, dtype=np.float32),
            "frame_index": _scalar(0, world.num_frames - 1, np.int64),
            "step_index": _scalar(0, world.num_steps, np.int64),
            "sigma": _scalar(0.0, 1.0, np.float32),
            "sigma_next": _scalar(0.0, 1.0, np.float32),
            "timestep": _scalar(0.0, 1000.0, np.float32),
            "trajectory": spaces.Box(-np.inf, np.inf, shape=(t, k, 2), dtype=np.float32),
            "visibility": spaces.Box(0, 1, shape=(t, k), dtype=np.int64),
            "reference": spaces.Box(0.0, 1.0, shape=(3, *world.image_size), dtype=np.float32),
        }
    )


def action_space(world: World) -> spaces.Box:
    """``Box [C, H, W] float32`` (blocks: ``[P, C, H, W]``; unbounded: latents are Gaussian-scaled)."""
    return spaces.Box(-np.inf, np.inf, shape=world.action_shape, dtype=np.float32)


def control_observation(control: Control) -> dict[str, Tensor]:
    """The control part of the observation, ``[R, ...]`` in the declared dtypes."""
    return {
        "trajectory": control.trajectory.float(),  # [R, T, K, 2]
        "visibility": control.visibility.long(),  # [R, T, K]
        "reference": control.reference.float(),  # [R, 3, H_px, W_px]
    }


def observe(episodes: Episodes, controls: dict[str, Tensor], copy: bool) -> dict[str, Tensor]:
    """The batched observation ``{key: [R, ...]}`` of ``episodes`` now (scalars ``[R, 1]``).

    With ``copy=False`` ``snapshot`` and the control tensors are the env's own
    (valid until the next step or reset): the lean path of the collector.
    """
    w, r = episodes.world, episodes.num_rows
    n = episodes.step_index
    sigma = w.sigmas[n]
    sigma_next = w.sigmas[n + 1] if n < w.num_steps else w.sigmas[n]
    device = episodes.snapshot.device
    obs = {
        "snapshot": episodes.snapshot.clone() if copy else episodes.snapshot,  # [R, F, C, H, W]
        "frame_index": torch.full((r, 1), episodes.frame, dtype=torch.long, device=device),  # [R, 1]
        "step_index": torch.full((r, 1), n, dtype=torch.long, device=device),  # [R, 1]
        "sigma": torch.full((r, 1), float(sigma), dtype=torch.float32, device=device),  # [R, 1]
        "sigma_next": torch.full((r, 1), float(sigma_next), dtype=torch.float32, device=device),  # [R, 1]
        "timestep": torch.full((r, 1), 1000.0 * float(sigma), dtype=torch.float32, device=device),  # [R, 1]
    }
    for key in CONTROL_KEYS:
        obs[key] = controls[key].clone() if copy else controls[key]
    return obs


def policy_observation(obs: dict[str, Tensor]) -> TensorDict:
    """The policy's view of a batched observation: a TensorDict ``[R]`` with scalars ``[R]`` (no copies)."""
    r = obs["snapshot"].shape[0]
    td = {k: (v.reshape(r) if k in SCALAR_KEYS else v) for k, v in obs.items()}
    return TensorDict(td, batch_size=[r])
