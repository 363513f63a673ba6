"""GRPO loss values worked out by hand."""

import math

import pytest
import torch

from rldiff.grpo import grpo_loss


def test_mixed_signs_values_and_metrics():
    # r = exp(logp - old) = [1, 1.5]; A = [1, -2]; eps = 0.2
    # entry 0: min(1*1, 1*1) = 1                         -> contributes -1
    # entry 1: min(1.5*-2 = -3, clip(1.5)=1.2 * -2 = -2.4) = -3 -> contributes +3
    # loss_policy = (-1 + 3) / 2 = 1
    logp = torch.tensor([0.0, math.log(1.5)], requires_grad=True)
    out = grpo_loss(logp, torch.zeros(2), torch.tensor([1.0, -2.0]), 0.2)
    assert out["loss_policy"].item() == pytest.approx(1.0)
    assert out["loss"].item() == pytest.approx(1.0)
    assert out["loss_kl"].item() == 0.0
    assert out["clip_fraction"].item() == pytest.approx(0.5)  # |1.5 - 1| > 0.2
    assert out["ratio_mean"].item() == pytest.approx(1.25)
    # approx_kl = mean((r - 1) - log r) = (0 + 0.5 - ln 1.5) / 2
    assert out["approx_kl"].item() == pytest.approx((0.5 - math.log(1.5)) / 2, rel=1e-5)
    # gradient of -mean(r*A) w.r.t. logp on unclipped entries: -r*A/S = [-0.5, +1.5]
    out["loss"].backward()
    assert torch.allclose(logp.grad, torch.tensor([-0.5, 1.5]))


def test_clipped_entries_have_no_gradient():
    # A = +2 with r = 1.5 > 1 + eps: min(3, 1.2*2 = 2.4) = 2.4 (clipped, constant)
    # A = -1 with r = 0.5 < 1 - eps: min(-0.5, 0.8*-1 = -0.8) = -0.8 (clipped, constant)
    logp = torch.tensor([math.log(1.5), math.log(0.5)], requires_grad=True)
    out = grpo_loss(logp, torch.zeros(2), torch.tensor([2.0, -1.0]), 0.2)
    assert out["loss_policy"].item() == pytest.approx(-(2.4 - 0.8) / 2)
    out["loss"].backward()
    assert torch.equal(logp.grad, torch.zeros(2))
    assert out["clip_fraction"].item() == 1.0


def test_pessimistic_side_keeps_gradient():
    # A = +1 with r = 0.5: min(0.5, 0.8) = 0.5 unclipped -> d/dlogp = -r*A/S = -0.5
    logp = torch.tensor([math.log(0.5)], requires_grad=True)
    out = grpo_loss(logp, torch.zeros(1), torch.ones(1), 0.2)
    assert out["loss_policy"].item() == pytest.approx(-0.5)
    out["loss"].backward()
    assert logp.grad.item() == pytest.approx(-0.5)


def test_on_policy_ratio_one():
    logp = torch.randn(7)
    out = grpo_loss(logp.clone().requires_grad_(), logp, torch.randn(7), 1e-3)
    assert out["ratio_mean"].item() == 1.0 and out["clip_fraction"].item() == 0.0
    assert out["approx_kl"].item() == 0.0


def test_kl_term_by_hand():
    # mean - ref = [[1, 1], [0, 0]] -> per-entry mean square [1, 0]; std = [1, 2]
    # kl per entry = [1 / (2*1), 0 / (2*4)] = [0.5, 0]; mean = 0.25; times kl_coef 0.1 = 0.025
    mean = torch.tensor([[1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    out = grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, mean=mean, ref_mean=torch.zeros(2, 2), std=torch.tensor([1.0, 2.0]), kl_coef=0.1)
    assert out["loss_kl"].item() == pytest.approx(0.025)
    assert out["loss"].item() == pytest.approx(0.025)
    out["loss"].backward()
    # d/dmean of 0.1 * mean_S(mean_D((m - r)^2) / (2 std^2)) = 0.1 * (1/2) * (2 (m - r) / 2) / (2 std^2)
    # entry 0: 0.1 * 0.5 * 0.5 * 2 * 1 / 2 = 0.025 per element
    assert torch.allclose(mean.grad[0], torch.tensor([0.025, 0.025]))


def test_missing_advantages_and_kl_inputs_are_errors():
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(torch.zeros(2), torch.zeros(2), None, 0.2)
    with pytest.raises(ValueError, match="kl_coef > 0 needs"):
        grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, kl_coef=0.1)
    with pytest.raises(ValueError, match="old_log_prob"):
        grpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), 0.2)


@pytest.mark.parametrize("std", [2.0, torch.tensor(2.0), torch.tensor([2.0]), torch.tensor([2.0, 2.0])])
def test_kl_std_as_float_or_broadcastable_tensor(std):
    # mean - ref = [[1, 1], [2, 2]] -> per-entry mean square [1, 4]; std = 2 for both
    # kl per entry = [1 / 8, 4 / 8] = [0.125, 0.5]; mean = 0.3125; times kl_coef 0.1 = 0.03125
    mean = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    out = grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, mean=mean, ref_mean=torch.zeros(2, 2), std=std, kl_coef=0.1)
    assert out["loss_kl"].item() == pytest.approx(0.03125)


def test_kl_std_errors_name_the_argument():
    args = dict(mean=torch.ones(2, 3), ref_mean=torch.zeros(2, 3), kl_coef=0.1)
    with pytest.raises(ValueError, match=r"std must broadcast to \[S\] = \(2,\) .* got shape \(3,\)"):
        grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, std=torch.ones(3), **args)
    with pytest.raises(ValueError, match=r"std must broadcast to \[S\] = \(2,\) .* got shape \(2, 1\)"):
        grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, std=torch.ones(2, 1), **args)
    with pytest.raises(ValueError, match="std must be > 0"):
        grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, std=0.0, **args)
    with pytest.raises(TypeError, match="std must be a float or a tensor"):
        grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, std="1", **args)


def test_flow_grpo_beta_maps_to_kl_coef_beta_times_dt():
    # Flow-GRPO: kl = mean_dims((mean - ref)^2) / (2 g^2) with g its std_dev_t (no dt); the exact KL uses
    # std = g * sqrt(|dt|). With g = 0.7, |dt| = 0.25: std^2 = 0.1225; beta * theirs == (beta * dt) * exact.
    g, dt, beta = 0.7, 0.25, 0.04
    mean, ref = torch.tensor([[0.3, -0.1], [0.2, 0.5]]), torch.zeros(2, 2)
    theirs = (((mean - ref) ** 2).mean(dim=1) / (2 * g**2)).mean()
    out = grpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, mean=mean, ref_mean=ref, std=g * dt**0.5, kl_coef=beta * dt)
    assert out["loss_kl"].item() == pytest.approx(beta * theirs.item(), rel=1e-6)
