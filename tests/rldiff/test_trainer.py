"""The generic GRPO trainer on the 2-D toy world: ratio, learning, non-finite handling, resume."""

from functools import partial

import pytest
import torch

from rldiff.checkpoint import latest_checkpoint
from rldiff.stochasticity import AllSteps, OneStepPerFrame
from rldiff.toy import NoControlSource, ToyCollector, ToyFlowModel, ToyPolicy, pretrain
from rldiff.trainer import GRPOTrainer, NonFiniteError


@pytest.fixture(scope="module")
def pretrained_state():
    torch.manual_seed(0)
    model = ToyFlowModel(hidden=64)
    pretrain(model, steps=600, batch_size=256, generator=torch.Generator().manual_seed(0))
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_trainer(state, schedule=None, collector=None, **kw):
    model = ToyFlowModel(hidden=64)
    model.load_state_dict(state)
    policy = ToyPolicy(model, eta=0.7)
    kw = {"lr": 3e-4, "num_controls": 8, "group_size": 8, "clip_range": 0.05, "epochs": 2, "minibatch_size": 32, **kw}
    return GRPOTrainer(policy, collector or ToyCollector(num_steps=6), NoControlSource(), schedule or OneStepPerFrame(), **kw)


@pytest.mark.parametrize("schedule", [OneStepPerFrame(), AllSteps()])
def test_first_ratio_is_exactly_one(pretrained_state, schedule):
    trainer = make_trainer(pretrained_state, schedule, minibatch_size=None)
    metrics = trainer.step()
    assert abs(metrics["ratio_mean_first"] - 1.0) < 1e-6
    assert metrics["updates"] == 2.0


@pytest.mark.parametrize("schedule", [OneStepPerFrame(), AllSteps()])
def test_grpo_raises_the_reward(pretrained_state, schedule):
    trainer = make_trainer(pretrained_state, schedule, lr=1e-3)
    history = trainer.train(60)
    first = sum(m["reward_mean"] for m in history[:3]) / 3
    last = sum(m["reward_mean"] for m in history[-3:]) / 3
    assert last > first + 0.2, (first, last)


def test_kl_to_reference_is_reported_and_finite(pretrained_state):
    # one minibatch per iteration: the first loss is computed before any update, when policy == reference
    trainer = make_trainer(pretrained_state, kl_coef=0.04, lr=1e-3, epochs=1, minibatch_size=None)
    history = trainer.train(3)
    assert history[0]["loss_kl"] == 0.0
    assert history[-1]["loss_kl"] > 0.0 and history[-1]["loss_kl"] < 1.0


class PoisonedCollector(ToyCollector):
    """Sets the reward of the first ``bad_groups`` groups to NaN."""

    def __init__(self, bad_groups, **kw):
        super().__init__(**kw)
        self.bad_groups = bad_groups

    def collect(self, policy, control, group_size, mask, generator=None):
        td = super().collect(policy, control, group_size, mask, generator)
        td["reward"][td["group"] < self.bad_groups] = float("nan")
        return td


def test_nonfinite_groups_are_excluded_and_counted(pretrained_state):
    trainer = make_trainer(pretrained_state, collector=PoisonedCollector(1, num_steps=6))
    before = [p.clone() for p in trainer.params]
    metrics = trainer.step()
    assert metrics["nonfinite_groups"] == 1.0
    assert all(torch.isfinite(p).all() for p in trainer.params)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_too_many_nonfinite_groups_stop_the_run(pretrained_state):
    trainer = make_trainer(pretrained_state, collector=PoisonedCollector(3, num_steps=6), max_nonfinite_fraction=0.25)
    with pytest.raises(NonFiniteError, match="3 of 8 groups"):
        trainer.step()


def test_resume_continues_the_same_stream(pretrained_state, tmp_path):
    straight = make_trainer(pretrained_state, checkpoint_dir=tmp_path / "a", checkpoint_every=2)
    full = straight.train(4)

    first = make_trainer(pretrained_state, checkpoint_dir=tmp_path / "b", checkpoint_every=2)
    first.train(2)
    assert latest_checkpoint(tmp_path / "b").name == "ckpt-00000002"
    resumed = make_trainer(pretrained_state, checkpoint_dir=tmp_path / "b", checkpoint_every=2)
    assert resumed.resume() and resumed.iteration == 2
    tail = resumed.train(4)
    assert [m["reward_mean"] for m in tail] == [m["reward_mean"] for m in full[2:]]
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)
    files = sorted(p.name for p in latest_checkpoint(tmp_path / "b").iterdir())
    assert files == ["optimizer_policy.json", "optimizer_policy.safetensors", "policy.safetensors", "rng.safetensors", "state.json"]


def linear_to_zero(iterations: int):
    return partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.0, total_iters=iterations)


def test_lr_schedule_falls_linearly_and_resumes_on_schedule(pretrained_state, tmp_path):
    straight = make_trainer(pretrained_state, lr_schedule=linear_to_zero(4))
    history = straight.train(4)
    # iteration i runs at 3e-4 * (1 - i / 4); the schedule steps after each iteration, reaching 0 after the 4th
    assert [m["lr"] for m in history] == pytest.approx([3e-4, 2.25e-4, 1.5e-4, 0.75e-4])
    assert straight.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    first = make_trainer(pretrained_state, lr_schedule=linear_to_zero(4), checkpoint_dir=tmp_path, checkpoint_every=2)
    first.train(2)
    assert (latest_checkpoint(tmp_path) / "scheduler_lr.json").is_file()
    resumed = make_trainer(pretrained_state, lr_schedule=linear_to_zero(4), checkpoint_dir=tmp_path, checkpoint_every=2)
    assert resumed.resume()
    tail = resumed.train(4)
    assert [m["lr"] for m in tail] == [m["lr"] for m in history[2:]]
    assert all(torch.equal(a, b) for a, b in zip(straight.params, resumed.params))


def test_constructor_errors_name_the_argument(pretrained_state):
    with pytest.raises(ValueError, match="group_size"):
        make_trainer(pretrained_state, group_size=1)
    with pytest.raises(ValueError, match="minibatch_size"):
        make_trainer(pretrained_state, minibatch_size=0)
    for name, value, expected in (
        ("adv_clip", -1.0, "adv_clip must be a finite number > 0, got -1.0"),
        ("adv_clip", 0.0, "adv_clip must be a finite number > 0, got 0.0"),
        ("kl_coef", -1.0, "kl_coef must be a finite number >= 0"),
        ("checkpoint_every", 0, "checkpoint_every must be a positive int, got 0"),
        ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
        ("gamma", 2.0, r"gamma must lie in \[0, 1\], got 2.0"),
    ):
        with pytest.raises(ValueError, match=expected):
            make_trainer(pretrained_state, **{name: value})


class NaNRecompute(ToyPolicy):
    """Acts like ToyPolicy but its recomputed means are NaN (a policy that broke after collection)."""

    def recompute(self, rollout, control):
        return super().recompute(rollout, control) * float("nan")


def test_updates_skipped_for_nonfinite_log_probs_stop_the_run(pretrained_state):
    model = ToyFlowModel(hidden=64)
    model.load_state_dict(pretrained_state)
    trainer = GRPOTrainer(NaNRecompute(model, eta=0.7), ToyCollector(num_steps=6), NoControlSource(), OneStepPerFrame(), num_controls=4, group_size=4, minibatch_size=8)
    before = [p.clone() for p in trainer.params]
    with pytest.raises(NonFiniteError, match=r"2 of 2 updates were skipped for non-finite recomputed log-probs or gradients"):
        trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params))  # nothing was applied
