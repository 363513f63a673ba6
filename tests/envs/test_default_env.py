"""gymnasium.make(ENV_ID) with no arguments: the small CPU world, real parts, fast."""

from __future__ import annotations

import time

import gymnasium
import pytest
import torch

import envs
from policies.codecs import PixelCodec
from rewards.trackers import LucasKanadeTracker
from rewards.trajectory import TrajectoryHingeReward
from rldiff.data.sprites import SpritesDrag


def test_default_world_runs_an_episode_quickly():
    env = gymnasium.make(envs.ENV_ID)
    world = env.unwrapped.world
    assert isinstance(world.control_source, SpritesDrag) and isinstance(world.codec, PixelCodec)
    assert isinstance(world.reward, TrajectoryHingeReward) and isinstance(world.reward.tracker, LucasKanadeTracker)
    # Sprites-Drag 32x32 x 8 frames; PixelCodec(factor=4): C = 3 * 4**2 = 48, H = W = 32 / 4 = 8; N = 3
    assert (env.unwrapped.num_frames, env.unwrapped.num_steps, world.latent_shape) == (8, 3, (48, 8, 8))
    assert env.observation_space["trajectory"].shape == (8, 2, 2)  # T = 8, K = max_sprites = 2
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    rewards = []
    terminated = False
    while not terminated:
        obs, reward, terminated, _, info = env.step(0.5 * obs["snapshot"][int(obs["frame_index"])])
        rewards.append(reward)
    elapsed = time.perf_counter() - start
    assert len(rewards) == 24
    # frame 0: LK starts at the query points (0, trajectory[:, 0]), so the error is 0 and the hinge gives lam * alpha
    assert rewards[2] == pytest.approx(1.0 * 0.01, abs=1e-6)
    assert all(r == 0.0 for i, r in enumerate(rewards) if i % 3 != 2)
    assert all(0.0 <= r <= 0.01 + 1e-6 for r in rewards)  # hinge range [0, lam * alpha]
    assert elapsed < 5.0, f"a default episode took {elapsed:.2f} s (about 0.1-0.5 s expected on CPU)"


def test_default_make_vec():
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=4, vectorization_mode="vector_entry_point")
    obs, _ = venv.reset(seed=0, options={"group_size": 2})
    assert obs["snapshot"].shape == (4, 8, 48, 8, 8)
    obs, reward, term, trunc, _ = venv.step(torch.zeros(4, 48, 8, 8))
    assert reward.shape == term.shape == trunc.shape == (4,) and not bool(term.any())
