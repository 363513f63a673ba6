"""AR-Drag wiring at library level: GRPOTrainer + CausalWan FlowPolicy + the env + rewards, tiny models."""

from __future__ import annotations

import math

import gymnasium
import torch

import envs
from policies import CausalWan, FlowPolicy
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rewards.composite import CompositeReward
from rewards.sprites import SpritesQualityReward
from rewards.trajectory import TrajectoryHingeReward
from rldiff.flow import EulerMaruyamaStep
from rldiff.stochasticity import OneStepPerFrame
from rldiff.trainer import GRPOTrainer


class _Counted:
    """Counts calls of a bound method."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_one_grpo_iteration_through_the_env(small_env_kwargs):
    # AR-Drag's composite reward in the Sprites-Drag world: quality (fidelity to the reference) + motion (the hinge
    # over Lucas-Kanade)
    reward = CompositeReward({"quality": SpritesQualityReward(), "motion": TrajectoryHingeReward()})
    venv = gymnasium.make_vec(
        envs.ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", **(small_env_kwargs | {"reward": reward})
    )
    collector = envs.EnvCollector(venv)
    model = CausalWan.tiny()
    policy = FlowPolicy(model, ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32)), step=EulerMaruyamaStep(1.0))
    model.forward_parallel = parallel = _Counted(model.forward_parallel)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)  # no weight decay: any change comes from the gradient
    trainer = GRPOTrainer(
        policy, collector, venv.world.control_source, OneStepPerFrame(), optimizer=optimizer, num_controls=2, group_size=2, seed=0
    )
    model.forward_frame = acting = _Counted(model.forward_frame)

    metrics = trainer.step()

    # on-policy: the first minibatch's ratio before any update is exp(recomputed - old log-prob) = 1
    assert abs(metrics["ratio_mean_first"] - 1.0) < 1e-4, metrics["ratio_mean_first"]
    # a random tiny model's frames score quality ~0; the motion hinge still differs within a group (seeded)
    assert metrics["zero_variance_fraction"] < 1.0, "no group had reward variance: nothing to learn from"
    assert metrics["updates"] == 1.0 and metrics["grad_norm"] > 0
    assert acting.calls == 4 * 3  # collection: one cached call per (frame, step), all R rows at once
    assert parallel.calls == 1  # the update: log-probs of all S steps recomputed in one parallel pass
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "the GRPO step left every parameter unchanged"
    assert math.isfinite(metrics["reward_mean"]) and {"reward/motion", "reward/quality"} <= set(metrics)
    # a second iteration runs on the updated policy
    trainer.train(2)
    assert trainer.iteration == 2
