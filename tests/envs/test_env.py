"""The single env: Gymnasium's checker on the numpy face, episode structure, seeding, bad actions."""

from __future__ import annotations

import warnings

import gymnasium
import numpy
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import ArrayConversion

import envs
from rldiff.flow import shifted_sigmas


def _make(kwargs):
    return gymnasium.make(envs.ENV_ID, **kwargs)


def test_check_env_on_numpy_face(small_env_kwargs):
    env = ArrayConversion(_make(small_env_kwargs), env_xp=torch, target_xp=numpy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded latent Boxes and "wrapped env" are warned about, by design
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert isinstance(obs["snapshot"], numpy.ndarray) and obs["snapshot"].dtype == numpy.float32
    assert obs in env.observation_space


def test_episode_structure(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    f, n_steps = env.num_frames, env.num_steps
    assert (f, n_steps) == (4, 3)  # 4 pixel frames, PixelCodec temporal_factor 1 -> F = 4
    sigmas = shifted_sigmas(3, 1.0)  # 1, 2/3, 1/3, 0
    obs, info = env.reset(seed=7)
    assert info == {}
    initial = obs["snapshot"].clone()  # [F, C, H, W]: pure noise at reset
    order, rewards, terms = [], [], []
    for t in range(f * n_steps):
        m, n = int(obs["frame_index"]), int(obs["step_index"])
        order.append((m, n))
        assert float(obs["sigma"]) == pytest.approx(float(sigmas[n]))
        assert float(obs["sigma_next"]) == pytest.approx(float(sigmas[n + 1]))
        assert float(obs["timestep"]) == pytest.approx(1000 * float(sigmas[n]))
        action = torch.full(env.world.latent_shape, 0.01 * t)  # a recognizable next latent
        obs, reward, terminated, truncated, info = env.step(action)
        snap = obs["snapshot"]
        # the action is the new latent of frame m; later frames still hold their initial noise
        assert torch.equal(snap[m], action)
        assert torch.equal(snap[m + 1 :], initial[m + 1 :])
        completes = n == n_steps - 1
        assert (reward != 0.0) == completes  # mean brightness of a decoded frame is > 0
        assert ("reward_terms" in info) == completes
        if completes:
            assert info["frame"] == m
            rewards.append(reward)
            terms.append(info["reward_terms"]["red"])
        assert terminated == (t == f * n_steps - 1) and truncated is False
    assert order == [(m, n) for m in range(f) for n in range(n_steps)]  # F*N steps in frame order
    # terminal state: last frame at step N, sigma 0
    assert (int(obs["frame_index"]), int(obs["step_index"]), float(obs["sigma"])) == (f - 1, n_steps, 0.0)
    # PixelCodec decodes latent value c to pixels (c + 1) / 2: frame m's last action is 0.01*(3m+2)
    expected = [(0.01 * (3 * m + 2) + 1) / 2 for m in range(f)]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert terms == pytest.approx(expected, abs=1e-6)  # a grey frame: red channel = brightness
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


def test_same_seed_same_episode_and_imposed_control(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)

    def episode(seed, options=None):
        obs, _ = env.reset(seed=seed, options=options)
        out = [obs]
        while True:
            obs, reward, term, _, _ = env.step(0.5 * obs["snapshot"][int(obs["frame_index"])])
            out.append(obs | {"reward": torch.tensor(reward)})
            if term:
                return out, env.control

    a, ctrl_a = episode(3)
    b, _ = episode(3)
    c, ctrl_c = episode(4)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert not torch.equal(a[0]["snapshot"], c[0]["snapshot"])
    assert not torch.equal(ctrl_a.trajectory, ctrl_c.trajectory)
    # imposing seed 4's control on seed 3 keeps seed 3's noise: noise is drawn before the control
    d, ctrl_d = episode(3, {"control": ctrl_c})
    assert torch.equal(d[0]["snapshot"], a[0]["snapshot"])
    assert torch.equal(d[0]["trajectory"], c[0]["trajectory"]) and ctrl_d.prompt == ctrl_c.prompt


def test_bad_actions_and_options_raise(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    env.reset(seed=0)
    shape = env.world.latent_shape  # (48, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(48, 8, 8\).*got \(48, 8\)"):
        env.step(torch.zeros(48, 8))
    with pytest.raises(TypeError, match="float32.*float64"):
        env.step(torch.zeros(shape, dtype=torch.float64))
    bad = torch.zeros(shape)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)
    with pytest.raises(TypeError, match="torch.Tensor"):
        env.step([0.0])
    # the failed steps left the state untouched
    obs, *_ = env.step(numpy.zeros(shape, dtype=numpy.float32))  # numpy actions are accepted (torchrl sends them)
    assert int(obs["step_index"]) == 1
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(options={"contrl": None})
    wrong = env.world.control_source.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="trajectory"):
        env.reset(options={"control": wrong})


def test_parts_are_checked(small_env_kwargs):
    with pytest.raises(TypeError, match="codec must satisfy rldiff.protocols.Codec"):
        envs.ARVideoDenoisingEnv(**(small_env_kwargs | {"codec": object()}))
    with pytest.raises(ValueError, match="_target_"):
        envs.ARVideoDenoisingEnv(**(small_env_kwargs | {"codec": {"factor": 4}}))


def test_large_seeds_follow_gymnasium_and_give_distinct_episodes(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)

    def first(seed):
        obs, _ = env.reset(seed=seed)
        return obs["snapshot"], env.control.trajectory

    seeds = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**33, 2**63, 2**64, 2**64 + 1, 10**40]
    snaps = [first(s)[0] for s in seeds]
    for i in range(len(seeds)):  # torch keeps 32 bits of a seed: 2**32 used to replay seed 0
        for j in range(i):
            assert not torch.equal(snaps[i], snaps[j]), (seeds[i], seeds[j])
    for s, snap in zip(seeds, snaps):  # still reproducible
        assert torch.equal(first(s)[0], snap), s
    assert torch.equal(first(3)[0], torch.randn(env.world.snapshot_shape, generator=torch.Generator().manual_seed(3)))
    for bad, shown in [(-1, "got -1"), (1.5, "got 1.5 of type float"), ("3", "got '3' of type str"), (True, "got True of type bool")]:
        with pytest.raises(gymnasium.error.Error, match=f"seed must be a non-negative python int.*{shown}"):
            env.reset(seed=bad)


def test_options_must_be_a_dict(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    with pytest.raises(TypeError, match=r"options must be a dict \(or None\), got list \[1, 2\]"):
        env.reset(seed=0, options=[1, 2])
    env.reset(seed=0, options={})


def test_an_action_that_requires_grad_is_stored_detached(small_env_kwargs):
    env = envs.ARVideoDenoisingEnv(**small_env_kwargs)
    env.reset(seed=0)
    weight = torch.ones((), requires_grad=True)
    action = weight * torch.full(env.world.latent_shape, 0.25)  # a policy output still in its graph
    obs, *_ = env.step(action)
    assert env.snapshot.grad_fn is None and not env.snapshot.requires_grad
    assert all(not v.requires_grad for v in obs.values())
    assert torch.equal(obs["snapshot"][0], action.detach())
    venv = envs.ARVideoDenoisingVectorEnv(2, **small_env_kwargs)
    venv.reset(seed=0)
    obs, *_ = venv.step(weight * torch.zeros(2, *venv.world.latent_shape))
    assert venv.snapshot.grad_fn is None and all(not v.requires_grad for v in obs.values())


def test_reset_under_float64_default_dtype_gives_the_float32_episode(small_env_kwargs):
    def episode():
        env = envs.ARVideoDenoisingEnv(**small_env_kwargs)
        obs, _ = env.reset(seed=5)
        out = [obs]
        while True:
            obs, reward, term, _, _ = env.step(0.5 * obs["snapshot"][int(obs["frame_index"])])
            out.append(obs | {"reward": torch.tensor(reward, dtype=torch.float64)})
            if term:
                return out

    expected = episode()
    torch.set_default_dtype(torch.float64)
    try:
        got = episode()
    finally:
        torch.set_default_dtype(torch.float32)
    assert all(torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype for x, y in zip(expected, got) for k in x)
