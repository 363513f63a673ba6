"""The torchrl face: GymEnv on the registered id, and GymWrapper on the native vector env."""

from __future__ import annotations

import torch
from torchrl.envs import GymEnv, GymWrapper
from torchrl.envs.utils import check_env_specs

import envs


def test_check_env_specs_gymenv_with_default_parts():
    env = GymEnv(envs.ENV_ID)  # the registered CPU default world: Sprites-Drag, PixelCodec, hinge reward over LK
    check_env_specs(env, seed=0)
    td = env.rollout(100)  # stops at termination: F*N = 8*3 steps
    assert td.batch_size == (24,)
    reward = td["next", "reward"].squeeze(-1)  # [24]
    completes = torch.arange(24) % 3 == 2
    assert bool((reward[~completes] == 0).all())
    assert bool(td["next", "terminated"][-1]) and not bool(td["next", "terminated"][:-1].any())


def test_check_env_specs_batched_vector_env(small_env_kwargs):
    venv = envs.ARVideoDenoisingVectorEnv(3, **small_env_kwargs)
    env = GymWrapper(venv)
    assert env.batch_size == (3,)
    check_env_specs(env, seed=0)
    td = env.rollout(12, break_when_any_done=True)
    assert td.batch_size == (3, 12)
    assert td["next", "snapshot"].shape == (3, 12, 4, 48, 8, 8)
