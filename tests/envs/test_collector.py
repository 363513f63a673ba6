"""EnvCollector: the rollout TensorDict holds exactly what GRPO needs, reproducibly."""

from __future__ import annotations

import pytest
import torch

import envs
from rldiff.flow import gaussian_log_prob
from rldiff.protocols import Collector
from rldiff.rollout import STEP_KEYS
from rldiff.stochasticity import AllSteps, NoSteps, OneStepPerFrame


@pytest.fixture
def collector(small_env_kwargs):
    return envs.EnvCollector(envs.ARVideoDenoisingVectorEnv(1, **small_env_kwargs))


def test_rollout_layout_and_contents(collector, policy_cls):
    assert isinstance(collector, Collector)
    f, n = collector.num_frames, collector.num_steps  # 4, 3
    b, g = 2, 3
    control = collector.env.world.control_source.sample(b, torch.Generator().manual_seed(1))
    mask = AllSteps().mask(f, n)  # steps 0 and 1 of every frame (the last step is excluded)
    policy = policy_cls()
    td = collector.collect(policy, control, g, mask, torch.Generator().manual_seed(0))
    r, s = b * g, f * 2
    assert td.batch_size == (r,)
    assert set(td.keys()) == {"group", "control_index", "reward", "reward_terms", "clean", "steps"}
    assert set(td["steps"].keys()) == set(STEP_KEYS) and td["steps"].batch_size == (r, s)
    assert td["group"].tolist() == [0, 0, 0, 1, 1, 1] == td["control_index"].tolist()
    assert policy.calls == [(m, k, bool(mask[m, k])) for m in range(f) for k in range(n)]
    assert policy.control.prompt == [p for p in control.prompt for _ in range(g)]  # reset with R rows, [B, G] order
    steps = td["steps"]
    assert steps["frame"][0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and steps["step"][0].tolist() == [0, 1] * 4
    assert torch.allclose(steps["sigma"][0], torch.tensor([1.0, 2 / 3] * 4))
    assert torch.allclose(steps["sigma_next"][0], torch.tensor([2 / 3, 1 / 3] * 4))
    # the action of step (m, 0) is the input latent of step (m, 1)
    assert torch.equal(steps["action"][:, 0::2], steps["latent"][:, 1::2])
    # step (m, 0) starts from frame m's initial noise: what the env drew at reset from the collector's seed
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(0))) % 2**32
    single = envs.ARVideoDenoisingEnv(collector.env.world.control_source, collector.env.world.codec, collector.env.world.reward)
    for row in (0, 4):
        obs, _ = single.reset(seed=seed + row, options={"control": control.index([row // g])})
        assert torch.equal(steps["latent"][row, 0::2], obs["snapshot"])
    # old log-probs are the Gaussian log-density of the action under the recorded mean and std
    lp = gaussian_log_prob(steps["action"].flatten(0, 1), steps["mean"].flatten(0, 1), steps["std"].flatten())
    assert torch.allclose(lp, steps["log_prob"].flatten(), atol=1e-5)
    assert bool((steps["std"] > 0).all())
    # per-frame rewards: the stand-in scores decoded brightness of the clean frames
    video = collector.env.world.codec.decode(td["clean"])  # [R, T, 3, 32, 32]
    assert torch.allclose(td["reward"], video.mean(dim=(2, 3, 4)), atol=1e-6)
    assert torch.allclose(td["reward_terms", "red"], video[:, :, 0].mean(dim=(2, 3)), atol=1e-6)
    assert torch.equal(td["clean"], collector.env_for(r).snapshot)


def test_reproducible_from_generator_and_schedules(collector, policy_cls):
    f, n = collector.num_frames, collector.num_steps
    control = collector.env.world.control_source.sample(1, torch.Generator().manual_seed(2))
    mask = OneStepPerFrame().mask(f, n, torch.Generator().manual_seed(3))
    a = collector.collect(policy_cls(), control, 2, mask, torch.Generator().manual_seed(9))
    b = collector.collect(policy_cls(), control, 2, mask, torch.Generator().manual_seed(9))
    c = collector.collect(policy_cls(), control, 2, mask, torch.Generator().manual_seed(10))
    assert (a == b).all()
    assert not torch.equal(a["clean"], c["clean"])
    assert a["steps"].batch_size == (2, f)  # one stochastic step per frame
    assert a["steps", "step"][0].tolist() == [int(mask[m].nonzero()) for m in range(f)]
    ode = collector.collect(policy_cls(), control, 2, NoSteps().mask(f, n), torch.Generator().manual_seed(9))
    assert ode["steps"].batch_size == (2, 0) and ode["reward"].shape == (2, f)


def test_shared_noise_rollouts_differ_only_by_the_actions(small_env_kwargs, policy_cls):
    env = envs.ARVideoDenoisingVectorEnv(1, **small_env_kwargs)
    shared = envs.EnvCollector(env, shared_noise=True)
    f, n = shared.num_frames, shared.num_steps
    control = env.world.control_source.sample(2, torch.Generator().manual_seed(2))
    ode = shared.collect(policy_cls(), control, 3, NoSteps().mask(f, n), torch.Generator().manual_seed(9))
    clean = ode["clean"].reshape(2, 3, *ode["clean"].shape[1:])
    assert torch.equal(clean[:, 0], clean[:, 1]) and torch.equal(clean[:, 0], clean[:, 2])  # deterministic steps: one video per group
    assert not torch.equal(clean[0, 0], clean[1, 0])
    sde = shared.collect(policy_cls(), control, 3, AllSteps().mask(f, n), torch.Generator().manual_seed(9))
    latent = sde["steps", "latent"]  # [R, S, C, H, W]: the first step's input is the initial noise of frame 0
    assert torch.equal(latent[0, 0], latent[1, 0]) and torch.equal(latent[0, 0], latent[2, 0])
    assert not torch.equal(sde["clean"][0], sde["clean"][1])  # the stochastic steps tell them apart
    own = envs.EnvCollector(env).collect(policy_cls(), control, 3, NoSteps().mask(f, n), torch.Generator().manual_seed(9))
    assert not torch.equal(own["clean"][0], own["clean"][1])
    with pytest.raises(TypeError, match="shared_noise must be a bool, got 1"):
        envs.EnvCollector(env, shared_noise=1)


def test_bad_mask_raises(collector, policy_cls):
    control = collector.env.world.control_source.sample(1, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \[F, N\] = \(4, 3\)"):
        collector.collect(policy_cls(), control, 2, torch.ones(3, 3, dtype=torch.bool))


def test_a_non_finite_action_excludes_its_group_and_names_the_policy(collector, policy_cls):
    class NaNAtFrame1(policy_cls):
        """The stand-in policy, but row 1's action is NaN at (m, n) = (1, 0) and row 3's is inf at (2, 1)."""

        def act(self, obs, stochastic, generator=None):
            out = super().act(obs, stochastic, generator)
            m, n = int(obs["frame_index"][0]), int(obs["step_index"][0])
            if (m, n) == (1, 0):
                out["action"][1, 0, 0, 0] = float("nan")
            if (m, n) == (2, 1):
                out["action"][3] = float("inf")
            return out

    f, n = collector.num_frames, collector.num_steps
    control = collector.env.world.control_source.sample(2, torch.Generator().manual_seed(1))
    mask = AllSteps().mask(f, n)
    clean = collector.collect(policy_cls(), control, 2, mask, torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning) as caught:
        td = collector.collect(NaNAtFrame1(), control, 2, mask, torch.Generator().manual_seed(0))
    messages = [str(w.message) for w in caught]
    assert any("NaNAtFrame1.act returned a non-finite action" in s and "frame m=1, step n=0 for rows [1]" in s for s in messages)
    assert any("frame m=2, step n=1 for rows [3]" in s for s in messages)
    reward = td["reward"]  # [R, F]: NaN from the bad frame on, so compute_advantages excludes groups 0 and 1
    assert torch.isfinite(reward[1, :1]).all() and torch.isnan(reward[1, 1:]).all()
    assert torch.isfinite(reward[3, :2]).all() and torch.isnan(reward[3, 2:]).all()
    assert torch.isnan(td["reward_terms", "red"][1, 1:]).all()
    steps = td["steps"]  # AllSteps: steps (m, 0), (m, 1) recorded; (1, 0) is index 2, (2, 1) index 5
    assert torch.isnan(steps["log_prob"][1, 2]) and torch.isnan(steps["log_prob"][3, 5])
    assert torch.equal(steps["action"][1, 2], steps["latent"][1, 2])  # the env was sent x_{m,n}
    for row in (0, 2):  # the other rows are exactly the clean run's
        assert torch.equal(td["reward"][row], clean["reward"][row]) and torch.equal(td["clean"][row], clean["clean"][row])
    assert torch.isfinite(td["clean"]).all()


def test_group_size_and_num_envs_errors_name_the_argument(collector, policy_cls, small_env_kwargs):
    control = collector.env.world.control_source.sample(1, torch.Generator().manual_seed(2))
    mask = torch.ones(4, 3, dtype=torch.bool)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"group_size must be a positive int.*got {bad!r}"):
            collector.collect(policy_cls(), control, bad, mask)
    with pytest.raises(ValueError, match=r"num_envs must be a positive int \(R = B \* G rows: controls times group size\), got 0"):
        envs.ARVideoDenoisingVectorEnv(0 * 4, **small_env_kwargs)  # an example's num_controls * group_size with G = 0
