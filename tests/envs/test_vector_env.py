"""The natively batched vector env: equals the single env row by row; make_vec; lockstep resets."""

from __future__ import annotations

import gymnasium
import pytest
import torch

import envs


def _run(env, obs, actions_fn):
    """Step an env from ``obs`` to termination with ``actions_fn(obs)``; returns the observations and rewards per step."""
    obs_list, rewards = [], []
    while True:
        obs, reward, term, _, info = env.step(actions_fn(obs))
        obs_list.append({k: v.clone() for k, v in obs.items()})
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        if bool(torch.as_tensor(term).all()):
            return obs_list, rewards


def _current(obs):
    """Half of the current frame's latent: ``[..., C, H, W]`` (rows keep their own frame index)."""
    snap, m = obs["snapshot"], obs["frame_index"]
    if snap.dim() == 4:
        return 0.5 * snap[int(m)]
    return 0.5 * snap[torch.arange(snap.shape[0]), m.reshape(-1)]


def test_vector_env_equals_single_env_run_g_times(small_env_kwargs):
    b, g, seed = 2, 3, 11
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=b * g, vectorization_mode="vector_entry_point", **small_env_kwargs)
    assert isinstance(venv, envs.ARVideoDenoisingVectorEnv)
    control = venv.unwrapped.world.control_source.sample(b, torch.Generator().manual_seed(5))
    vobs, _ = venv.reset(seed=seed, options={"control": control, "group_size": g})
    v_steps, v_rewards = _run(venv, vobs, _current)

    single = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    for r in range(b * g):
        obs, _ = single.reset(seed=seed + r, options={"control": control.index([r // g])})  # row r <-> seed + r
        for k in obs:
            assert torch.equal(obs[k], vobs[k][r]), (r, k)
        s_steps, s_rewards = _run(single, obs, _current)
        assert len(s_steps) == len(v_steps) == 4 * 3
        for t, (s_obs, v_obs) in enumerate(zip(s_steps, v_steps)):
            for k in s_obs:
                assert torch.equal(s_obs[k], v_obs[k][r]), (r, t, k)
            assert torch.allclose(s_rewards[t], v_rewards[t][r])


def test_drawn_controls_follow_the_group_layout(small_env_kwargs):
    venv = envs.ARVideoDenoisingVectorEnv(4, group_size=2, **small_env_kwargs)
    obs, _ = venv.reset(seed=20)
    traj = obs["trajectory"]  # [R, T, K, 2]
    assert torch.equal(traj[0], traj[1]) and torch.equal(traj[2], traj[3]) and not torch.equal(traj[1], traj[2])
    assert not torch.equal(obs["snapshot"][0], obs["snapshot"][1])  # same control, own noise
    # group b's control is drawn after row b*G's noise: the single env with seed 20 + b*G draws the same one
    single = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    for b in range(2):
        s_obs, _ = single.reset(seed=20 + 2 * b)
        assert torch.equal(s_obs["trajectory"], traj[2 * b])
        assert torch.equal(s_obs["snapshot"], obs["snapshot"][2 * b])
    # without a seed the row generators continue: a new episode differs
    obs2, _ = venv.reset()
    assert not torch.equal(obs2["snapshot"], obs["snapshot"])


def test_shared_noise_gives_a_group_one_initial_noise(small_env_kwargs):
    venv = envs.ARVideoDenoisingVectorEnv(6, group_size=3, **small_env_kwargs)
    own, _ = venv.reset(seed=20)
    shared, _ = venv.reset(seed=20, options={"shared_noise": True})
    snap = shared["snapshot"]  # [R, F, C, H, W]
    for b in range(2):  # every row of group b starts from row b*G's own noise, drawn by the same generator
        for g in range(3):
            assert torch.equal(snap[3 * b + g], own["snapshot"][3 * b])
    assert not torch.equal(snap[0], snap[3])  # groups still differ
    assert torch.equal(shared["trajectory"], own["trajectory"])  # controls drawn as without sharing
    with pytest.raises(ValueError, match=r"options\['shared_noise'\] must be a bool, got 'yes'"):
        venv.reset(seed=20, options={"shared_noise": "yes"})


def test_lockstep_resets_and_errors(small_env_kwargs):
    venv = envs.ARVideoDenoisingVectorEnv(2, **small_env_kwargs)
    obs, _ = venv.reset(seed=0)
    assert obs["frame_index"].shape == (2, 1) and obs["snapshot"].shape == (2, 4, 48, 8, 8)
    for key, space in venv.observation_space.items():  # declared == returned, shapes and dtypes
        assert tuple(obs[key].shape) == space.shape and str(obs[key].dtype) == f"torch.{space.dtype}", key
    obs, *_ = venv.step(_current(obs))
    # torchrl's partial reset with nothing to reset leaves the state as it is
    same, _ = venv.reset(options={"reset_mask": [False, False]})
    assert torch.equal(same["step_index"], torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="lockstep"):
        venv.reset(options={"reset_mask": [True, False]})
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 48, 8, 8\)"):
        venv.step(torch.zeros(3, 48, 8, 8))
    with pytest.raises(ValueError, match="group_size"):
        venv.reset(options={"group_size": 3})
    control = venv.world.control_source.sample(1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="trajectory"):
        venv.reset(options={"control": control})  # G = 1 needs B = 2 controls


def test_seeds_and_reset_mask_are_checked(small_env_kwargs):
    venv = envs.ARVideoDenoisingVectorEnv(2, **small_env_kwargs)
    for bad, shown in [(1.5, "seed must be .*got 1.5 of type float"), ("3", "seed must be .*got '3' of type str"), (-2, "seed must be .*got -2"),
                       ([0, 1.5], r"seed\[1\] must be .*got 1.5"), ([0, -1], r"seed\[1\] must be .*got -1")]:  # fmt: skip
        with pytest.raises(gymnasium.error.Error, match=shown):
            venv.reset(seed=bad)
    obs, _ = venv.reset(seed=2**32 - 1)  # row 1 gets seed 2**32, which is not seed 0
    zero, _ = venv.reset(seed=0)
    assert not torch.equal(obs["snapshot"][1], zero["snapshot"][0])
    single = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    assert torch.equal(obs["snapshot"][1], single.reset(seed=2**32)[0]["snapshot"])
    for bad in ([True, True, True], [True], [[True, True]], [1, 1]):
        with pytest.raises(ValueError, match=r"options\['reset_mask'\] must hold one bool per row, shape \[R=2\].*got"):
            venv.reset(options={"reset_mask": bad})
    venv.reset(options={"reset_mask": torch.ones(2, 1, dtype=torch.bool)})  # torchrl's [R, 1] form
