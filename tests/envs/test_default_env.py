"""gymnasium.make(ENV_ID) with no arguments: the small CPU world, real parts, fast."""

from __future__ import annotations

import time

import gymnasium
import pytest
import torch

import envs
from policies.codecs import PixelCodec
from rewards import CompositeReward, IncrementReward, LogReward
from rewards.sprites import SpritesQualityReward
from rewards.trackers import LucasKanadeTracker
from rewards.trajectory import TrajectoryHingeReward
from rldiff.data.sprites import SpritesDrag


def test_default_world_runs_an_episode_quickly_with_the_jobs_reward():
    env = gymnasium.make(envs.ENV_ID)
    world = env.unwrapped.world
    assert isinstance(world.control_source, SpritesDrag) and isinstance(world.codec, PixelCodec)
    # the reward GRPO trains with: the per-track hinge scored where a lost track was last found (lost="miss" teaches
    # GRPO to freeze), as per-frame increments, + 0.7 log Sprites quality
    reward = world.reward
    assert isinstance(reward, CompositeReward) and reward.term_weights == {"trajectory": 1.0, "quality": 0.7}
    hinge = reward.rewards["trajectory"].inner
    assert isinstance(reward.rewards["trajectory"], IncrementReward) and isinstance(hinge, TrajectoryHingeReward)
    assert (hinge.lost, hinge.per_point, hinge.lam, hinge.alpha) == ("stale", True, 20.0, 0.05)
    assert isinstance(hinge.tracker, LucasKanadeTracker)
    assert isinstance(reward.rewards["quality"], LogReward) and isinstance(reward.rewards["quality"].inner, SpritesQualityReward)
    # Sprites-Drag 32x32 x 8 frames; PixelCodec(factor=4): C = 3 * 4**2 = 48, H = W = 32 / 4 = 8; N = 3
    assert (env.unwrapped.num_frames, env.unwrapped.num_steps, world.latent_shape) == (8, 3, (48, 8, 8))
    assert env.observation_space["trajectory"].shape == (8, 2, 2)  # T = 8, K = max_sprites = 2
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    rewards, hinges, increments = [], [], []
    terminated = False
    while not terminated:
        obs, r, terminated, _, info = env.step(0.5 * obs["snapshot"][int(obs["frame_index"])])
        rewards.append(r)
        if "reward_terms" in info:
            hinges.append(float(info["reward_terms"]["trajectory/value"]))
            increments.append(float(info["reward_terms"]["trajectory"]))
    elapsed = time.perf_counter() - start
    assert len(rewards) == 24 and len(hinges) == 8
    assert all(r == 0.0 for i, r in enumerate(rewards) if i % 3 != 2)  # rewarded only when a frame completes
    # frame 0: LK starts at the query points (0, trajectory[:, 0]), so every error is 0 and the hinge is lam * alpha = 1
    assert hinges[0] == pytest.approx(20.0 * 0.05, abs=1e-6)
    assert all(0.0 <= h <= 1.0 + 1e-6 for h in hinges)  # hinge range [0, lam * alpha]
    assert sum(increments) == pytest.approx(hinges[-1], abs=1e-5)  # the increments telescope to the last frame's hinge
    assert elapsed < 5.0, f"a default episode took {elapsed:.2f} s (about 0.1-0.5 s expected on CPU)"


def test_close_releases_the_codec_and_reward_and_a_closed_env_says_so():
    env = gymnasium.make(envs.ENV_ID)
    env.reset(seed=0)
    world = env.unwrapped.world
    env.close()
    assert world.closed and world.reward is None and world.codec is None and env.unwrapped.snapshot is None
    with pytest.raises(RuntimeError, match="ARVideoDenoisingEnv is closed"):
        env.reset(seed=0)
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    view = venv.unwrapped.resized(1)  # shares the world: closing the view leaves the env it came from working
    view.close()
    assert not venv.unwrapped.world.closed
    venv.reset(seed=0)
    venv.close()
    assert venv.unwrapped.world.closed
    with pytest.raises(RuntimeError, match="ARVideoDenoisingVectorEnv is closed"):
        venv.step(torch.zeros(2, 48, 8, 8))


def test_default_make_vec():
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=4, vectorization_mode="vector_entry_point")
    obs, _ = venv.reset(seed=0, options={"group_size": 2})
    assert obs["snapshot"].shape == (4, 8, 48, 8, 8)
    obs, reward, term, trunc, _ = venv.step(torch.zeros(4, 48, 8, 8))
    assert reward.shape == term.shape == trunc.shape == (4,) and not bool(term.any())
