"""Step-1 losses worked out by hand."""

import math

import pytest
import torch

from rldiff.distill import add_noise, discriminator_loss, dmd_loss, flow_matching_loss, generator_adversarial_loss, sample_dmd_sigma, x0_from_velocity


def test_noise_and_x0_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    xt = add_noise(x0, eps, sigma)
    # the exact velocity eps - x0 recovers x0
    assert torch.allclose(x0_from_velocity(xt, eps - x0, sigma), x0, atol=1e-6)
    assert torch.allclose(xt[1], 0.5 * x0[1] + 0.5 * eps[1])


def test_flow_matching_loss_by_hand():
    # target eps - x0 = 1 - 0 = 1 everywhere; prediction 3 -> squared error 4
    out = flow_matching_loss(torch.full((2, 3), 3.0), torch.zeros(2, 3), torch.ones(2, 3))
    assert out["loss"].item() == pytest.approx(4.0)
    w = flow_matching_loss(torch.full((2, 3), 3.0), torch.zeros(2, 3), torch.ones(2, 3), weight=torch.tensor([1.0, 0.0]))
    assert w["loss"].item() == pytest.approx(2.0)


def test_dmd_gradient_points_from_fake_to_real():
    # x = 0, real = 1, fake = 3 (per element): norm = mean|x - real| = 1, grad = (3 - 1) / 1 = 2
    # loss = 0.5 * mean((x - (x - grad))^2) = 0.5 * 4 = 2; d loss / dx = (x - target) / n = grad / n
    x = torch.zeros(1, 4, requires_grad=True)
    out = dmd_loss(x, torch.ones(1, 4), torch.full((1, 4), 3.0))
    assert out["loss"].item() == pytest.approx(2.0)
    out["loss"].backward()
    assert torch.allclose(x.grad, torch.full((1, 4), 2.0 / 4))  # gradient descent moves x towards real (down the KL)
    # when the critic agrees with the teacher there is nothing to learn
    zero = dmd_loss(torch.zeros(1, 4, requires_grad=True), torch.ones(1, 4), torch.ones(1, 4))
    assert zero["loss"].item() == 0.0


def test_dmd_sigma_range_and_shift():
    s = sample_dmd_sigma(10_000, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 0.02 and s.max() <= 0.98
    assert s.mean() > 0.6  # shift 3 pushes mass to high noise: E[3u/(1+2u)] ~ 0.65


def test_adversarial_losses_by_hand():
    # softplus(0) = ln 2
    assert generator_adversarial_loss(torch.zeros(5))["loss"].item() == pytest.approx(math.log(2))
    d = discriminator_loss(torch.tensor([10.0]), torch.tensor([-10.0]))
    assert d["loss"].item() < 1e-4 and d["disc_accuracy"].item() == 1.0
