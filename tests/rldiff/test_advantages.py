"""Returns-to-go and group normalization."""

import pytest
import torch

from rldiff.advantages import (
    GroupAdvantage,
    PerTermAdvantage,
    RenormalizedPerTermAdvantage,
    compute_advantages,
    group_normalize,
    group_normalize_by_id,
    returns_to_go,
)


def test_returns_to_go_by_hand():
    r = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.equal(returns_to_go(r, 0.0), r)
    assert torch.equal(returns_to_go(r, 1.0), torch.tensor([[7.0, 6.0, 4.0]]))
    # gamma = 0.5: [1 + 0.5*2 + 0.25*4, 2 + 0.5*4, 4] = [3, 4, 4]
    assert torch.equal(returns_to_go(r, 0.5), torch.tensor([[3.0, 4.0, 4.0]]))
    with pytest.raises(ValueError, match="gamma"):
        returns_to_go(r, 1.5)


def test_group_normalize_by_hand():
    # group [1, 3]: mean 2, population std 1 -> [-1, 1] (eps 0)
    x = torch.tensor([[[1.0], [3.0]], [[5.0], [5.0]]])  # [B=2, G=2, F=1]
    out = group_normalize(x, eps=0.0 + 1e-12)
    assert torch.allclose(out[0], torch.tensor([[-1.0], [1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 1))  # zero-variance group -> zero advantage


def test_group_normalize_by_id_equals_reshape_form_in_any_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=g)  # [B, G, F]
    ref = group_normalize(x, 1e-4).reshape(12, 5)
    group = torch.arange(3).repeat_interleave(4)
    perm = torch.randperm(12, generator=g)
    out, std = group_normalize_by_id(x.reshape(12, 5)[perm], group[perm], 1e-4)
    assert torch.allclose(out, ref[perm], atol=1e-6)
    assert torch.allclose(std, x.std(dim=1, correction=0, keepdim=True).expand(3, 4, 5).reshape(12, 5)[perm], atol=1e-6)


def test_group_normalize_by_id_unequal_groups():
    x = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    out, _ = group_normalize_by_id(x, torch.tensor([0, 0, 1, 1, 1]), eps=0.0)
    # group 1: mean 20, std sqrt(200/3)
    assert torch.allclose(out, torch.tensor([-1.0, 1.0, -10 / (200 / 3) ** 0.5, 0.0, 10 / (200 / 3) ** 0.5]), atol=1e-6)


def rollout_with_terms(terms: dict[str, torch.Tensor], group_size: int):
    """A rollout TensorDict whose total reward is the sum of ``terms {name: [R, F]}``."""
    from rldiff.rollout import RolloutRecorder

    rows = next(iter(terms.values())).shape[0]
    ids = torch.arange(rows) // group_size
    rec = RolloutRecorder(group=ids, control_index=ids)
    z = torch.zeros(rows, 2)
    rec.record_step(0, 0, 1.0, 0.5, z, z, z, 0.5, torch.zeros(rows))
    for m in range(next(iter(terms.values())).shape[1]):
        rec.record_frame(z, sum(t[:, m] for t in terms.values()), {k: t[:, m] for k, t in terms.items()})
    return rec.build()


def corr(a, b) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_per_term_estimators_weigh_a_quiet_term_like_a_loud_one():
    g = torch.Generator().manual_seed(0)
    quiet, loud = 0.01 * torch.randn(16, 3, generator=g), 10.0 * torch.randn(16, 3, generator=g)
    rollout = rollout_with_terms({"quiet": quiet, "loud": loud}, group_size=8)
    groups = torch.arange(16) // 8
    norm_quiet = group_normalize_by_id(quiet, groups, 1e-6)[0]
    norm_loud = group_normalize_by_id(loud, groups, 1e-6)[0]

    total = compute_advantages(rollout, 0.0, 1e-6, 100.0, GroupAdvantage())
    assert corr(total.frame, quiet) < 0.2  # the summed reward drowns the quiet term
    assert torch.allclose(total.frame, compute_advantages(rollout, 0.0, 1e-6, 100.0).frame)  # the default estimator
    # MixGRPO / DanceGRPO: the weighted sum of per-term normalized advantages, no second normalization
    summed = compute_advantages(rollout, 0.0, 1e-6, 100.0, PerTermAdvantage({"quiet": 1.0, "loud": 0.5}))
    assert torch.allclose(summed.frame, norm_quiet + 0.5 * norm_loud, atol=1e-5)
    # the spread of a sum of two unit-spread terms: sqrt(1 + 0.25 + 2 * 0.5 * rho) for their correlation rho, not 1
    assert not torch.allclose(summed.frame.view(2, 8, 3).std(dim=1, correction=0), torch.ones(2, 3), atol=1e-2)
    # ... and that sum normalized again: unit spread in every group and frame, as with the total
    renormalized = compute_advantages(rollout, 0.0, 1e-6, 100.0, RenormalizedPerTermAdvantage({"quiet": 1.0, "loud": 1.0}))
    assert torch.allclose(renormalized.frame, group_normalize_by_id(norm_quiet + norm_loud, groups, 1e-6)[0], atol=1e-5)
    assert corr(renormalized.frame, quiet) > 0.5 and corr(renormalized.frame, loud) > 0.5
    assert torch.allclose(renormalized.frame.view(2, 8, 3).std(dim=1, correction=0), torch.ones(2, 3), atol=1e-4)
    negative = compute_advantages(rollout, 0.0, 1e-6, 100.0, RenormalizedPerTermAdvantage({"quiet": -1.0}))
    assert torch.allclose(negative.frame, -norm_quiet, atol=1e-3)


def test_per_term_estimators_take_the_rewards_weights_and_name_a_missing_term():
    rollout = rollout_with_terms({"a": torch.randn(4, 2)}, group_size=2)
    with pytest.raises(KeyError, match=r"PerTermAdvantage: weights name \['b'\], the rollout's reward_terms are \['a'\]"):
        compute_advantages(rollout, 0.0, 1e-4, 5.0, PerTermAdvantage({"b": 1.0}))
    with pytest.raises(ValueError, match="RenormalizedPerTermAdvantage needs term weights"):
        RenormalizedPerTermAdvantage().with_default_weights({})
    filled = RenormalizedPerTermAdvantage().with_default_weights({"a": 2.0})
    assert type(filled) is RenormalizedPerTermAdvantage and dict(filled.weights) == {"a": 2.0}
    assert PerTermAdvantage({"a": 1.0}).with_default_weights({"a": 2.0}).weights["a"] == 1.0  # given weights win
    assert GroupAdvantage().with_default_weights({"a": 2.0}) == GroupAdvantage()
    with pytest.raises(ValueError, match="adv_clip must be > 0, got 0.0"):
        compute_advantages(rollout, 0.0, 1e-4, 0.0)


def test_a_nonfinite_term_excludes_its_group_even_when_the_total_is_finite():
    a, b = torch.randn(8, 2, generator=torch.Generator().manual_seed(1)), torch.zeros(8, 2)
    rollout = rollout_with_terms({"a": a, "b": b}, group_size=4)
    rollout["reward_terms", "b"][1, 0] = float("nan")  # group 0; the recorded total stays finite
    assert bool(torch.isfinite(rollout["reward"]).all())
    adv = compute_advantages(rollout, 0.0, 1e-4, 5.0, PerTermAdvantage({"a": 1.0, "b": 1.0}))
    assert adv.nonfinite_groups == 1 and adv.valid.tolist() == [False] * 4 + [True] * 4
    assert torch.equal(adv.frame[:4], torch.zeros(4, 2)) and bool(torch.isfinite(adv.frame).all())
