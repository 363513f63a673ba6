"""Stochastic steps as objects (CPSStep, EulerMaruyamaStep) and Flow-GRPO's convention at sigma = 1."""

import dataclasses
import math

import pytest
import torch

from rldiff import CPSStep, EulerMaruyamaStep, StochasticStep
from rldiff.flow import cps_step, flow_grpo_diffusion, sde_step, shifted_sigmas


@pytest.mark.parametrize("num_steps", [3, 10])
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("eta", [0.7, 1.0])
def test_first_step_std_is_eta_whatever_n(num_steps, shift, eta):
    # at sigma = 1: g = eta * sqrt(1 / (1 - sigma_1)), std = g * sqrt(1 - sigma_1) = eta
    sigmas = shifted_sigmas(num_steps, shift)
    x = torch.randn(2, 3)
    _, _, std = EulerMaruyamaStep(eta)(x, x, float(sigmas[0]), float(sigmas[1]))
    assert float(std) == pytest.approx(eta, rel=1e-6)


def test_euler_maruyama_first_step_by_hand():
    # x = 1, v = 2, sigma = 1, sigma_next = 0.75, eta = 0.7, noise = 1:
    # g = 0.7 * sqrt(1 / 0.25) = 1.4, std = 1.4 * sqrt(0.25) = 0.7
    # eps_hat = x + (1 - 1) * v = 1, mean = 1 - 0.25 * (2 + 1.4^2 / 2 * 1) = 1 - 0.25 * 2.98 = 0.255
    x_next, mean, std = EulerMaruyamaStep(0.7)(torch.ones(1), 2 * torch.ones(1), 1.0, 0.75, noise=torch.ones(1))
    assert torch.allclose(mean, torch.tensor([0.255]))
    assert torch.allclose(std, torch.tensor(0.7))
    assert torch.allclose(x_next, torch.tensor([0.955]))


def test_old_cap_is_still_available():
    # cap 0.99 at sigma = 1: g = eta * sqrt(1 / 0.01) = 10 eta whatever sigma_next
    assert flow_grpo_diffusion(1.0, 1.0, sigma_cap=0.99) == pytest.approx(10.0)
    assert flow_grpo_diffusion(1.0, 1.0, 0.99) == pytest.approx(10.0)  # positional, as before
    s1 = float(shifted_sigmas(3, 3.0)[1])  # 0.857...
    x = torch.zeros(1)
    _, _, std = EulerMaruyamaStep(0.7, sigma_cap=0.99)(x, x, 1.0, s1)
    assert float(std) == pytest.approx(7.0 * math.sqrt(1.0 - s1), rel=1e-6)  # 2.65, not 0.7
    # below the cap both conventions agree: sigma = 0.5 -> g = eta * sqrt(0.5 / 0.5) = eta
    assert EulerMaruyamaStep(0.7, sigma_cap=0.99).diffusion(0.5, 0.25) == pytest.approx(0.7)
    assert EulerMaruyamaStep(0.7).diffusion(0.5, 0.25) == pytest.approx(0.7)


def test_flow_grpo_diffusion_conventions_and_errors():
    # sigma_next only matters at sigma = 1: [1 -> 0.8, 0.5 -> 0.2] gives [sqrt(1/0.2), sqrt(0.5/0.5)] = [2.236, 1]
    g = flow_grpo_diffusion(torch.tensor([1.0, 0.5]), 1.0, sigma_next=torch.tensor([0.8, 0.2]))
    assert torch.allclose(g, torch.tensor([math.sqrt(5.0), 1.0]))
    assert flow_grpo_diffusion(0.5, 0.7) == pytest.approx(0.7)  # sigma < 1 needs neither
    with pytest.raises(ValueError, match="sigma = 1 .* pass sigma_next"):
        flow_grpo_diffusion(1.0, 0.7)
    with pytest.raises(ValueError, match="sigma = 1"):
        flow_grpo_diffusion(torch.tensor([0.5, 1.0]), 0.7)
    with pytest.raises(ValueError, match="not both"):
        flow_grpo_diffusion(1.0, 0.7, sigma_cap=0.99, sigma_next=0.5)
    with pytest.raises(ValueError, match=r"sigma_cap must lie in \(0, 1\), got 1.0"):
        flow_grpo_diffusion(0.5, 0.7, sigma_cap=1.0)


def test_steps_equal_the_functions_and_take_per_sample_levels():
    g = torch.Generator().manual_seed(0)
    x, v, noise = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    sigma = torch.tensor([1.0, 0.6, 0.3])[:, None]  # [3, 1]
    sigma_next = torch.tensor([0.8, 0.4, 0.0])[:, None]
    x_next, mean, std = EulerMaruyamaStep(0.7)(x, v, sigma, sigma_next, noise=noise)
    for i in range(3):
        s, s_next = float(sigma[i]), float(sigma_next[i])
        ref = sde_step(x[i], v[i], s, s_next, flow_grpo_diffusion(s, 0.7, sigma_next=s_next), noise=noise[i])
        assert torch.allclose(x_next[i], ref[0], atol=1e-6) and torch.allclose(mean[i], ref[1], atol=1e-6)
        assert torch.allclose(std[i], ref[2], atol=1e-6)
    cps = CPSStep(0.5)(x, v, sigma, sigma + 0.0 - 0.1, noise=noise)
    assert all(torch.equal(a, b) for a, b in zip(cps, cps_step(x, v, sigma, sigma - 0.1, 0.5, noise=noise)))


def test_cps_step_refuses_a_stochastic_step_to_zero():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"CPSStep\(eta=0.5\): a step to sigma_next = 0 has std"):
        CPSStep(0.5)(x, x, 0.6, 0.0)
    with pytest.raises(ValueError, match="sigma_next = 0"):
        CPSStep(0.5)(x, x, torch.tensor([[0.6], [0.3]]), torch.tensor([[0.3], [0.0]]))
    # Euler-Maruyama does have noise there: std = g * sqrt(0.6) with g = 0.7 * sqrt(0.6 / 0.4)
    _, _, std = EulerMaruyamaStep(0.7)(x, x, 0.6, 0.0)
    assert float(std) == pytest.approx(0.7 * math.sqrt(1.5) * math.sqrt(0.6), rel=1e-6)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: CPSStep(0.0), r"CPSStep: eta must lie in \(0, 1\], got 0.0"),
        (lambda: CPSStep(1.5), r"CPSStep: eta must lie in \(0, 1\], got 1.5"),
        (lambda: CPSStep(float("nan")), r"CPSStep: eta must lie in \(0, 1\], got nan"),
        (lambda: EulerMaruyamaStep(-0.1), r"EulerMaruyamaStep: eta must lie in \(0, inf\), got -0.1"),
        (lambda: EulerMaruyamaStep(0.7, sigma_cap=1.0), r"EulerMaruyamaStep: sigma_cap must lie in \(0, 1\) or None, got 1.0"),
        (lambda: EulerMaruyamaStep(0.7, sigma_cap=0.0), r"EulerMaruyamaStep: sigma_cap must lie in \(0, 1\) or None, got 0.0"),
    ],
)
def test_steps_validate_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_steps_reject_non_numbers_and_are_frozen_protocol_objects():
    with pytest.raises(TypeError, match=r"CPSStep: eta must be a float in \(0, 1\], got str '0.5'"):
        CPSStep("0.5")
    with pytest.raises(TypeError, match="EulerMaruyamaStep: eta must be a float"):
        EulerMaruyamaStep(True)
    step = EulerMaruyamaStep(1)
    assert step.eta == 1.0 and isinstance(step.eta, float)
    assert isinstance(step, StochasticStep) and isinstance(CPSStep(0.5), StochasticStep)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.eta = 0.5
    assert EulerMaruyamaStep(0.7) == EulerMaruyamaStep(0.7) != EulerMaruyamaStep(0.7, sigma_cap=0.99)


def test_excess_noise_after_three_coarse_steps_with_and_without_the_cap():
    """AR-Drag's 3 steps at shift 3, steps 0 and 1 stochastic, Gaussian data (s0 = 0.5) with its exact velocity.

    Exact propagation (benchmarks/sde_noise_level.py) gives std / exact marginal at sigma_2 = 0.6:
    old cap 0.99 4.28, peers' convention 2.04 (eta = 1); CPSStep(0.5) 0.97, the same as the ODE.
    By hand for step 0 of the peers' convention: c = v / x = 1 at sigma = 1, g^2 = 1 / (1 - 6/7) = 7,
    mean = x (1 - (1/7)(1 + 7/2)) = 0.357 x, std = 1 -> Var = 0.1276 + 1, std 1.062 vs exact 0.860 (1.23x).
    """
    s0, num = 0.5, 200_000
    sigmas = shifted_sigmas(3, 3.0).double().tolist()  # 1, 0.857, 0.6, 0
    exact = [math.sqrt((1 - s) ** 2 * s0**2 + s**2) for s in sigmas]
    ratios = {}
    for name, step in (("cap", EulerMaruyamaStep(1.0, sigma_cap=0.99)), ("peers", EulerMaruyamaStep(1.0)), ("cps", CPSStep(0.5))):
        g = torch.Generator().manual_seed(4)
        x = torch.randn(num, generator=g, dtype=torch.float64)
        for i in range(2):
            v = (sigmas[i] - (1 - sigmas[i]) * s0**2) / exact[i] ** 2 * x  # exact velocity of N(0, s0^2) data
            x, _, _ = step(x, v, sigmas[i], sigmas[i + 1], generator=g)
            if i == 0:
                ratios[name + "_1"] = float(x.std()) / exact[1]
        ratios[name] = float(x.std()) / exact[2]
    assert ratios["peers_1"] == pytest.approx(1.23, abs=0.02)
    assert ratios["cap"] == pytest.approx(4.28, abs=0.05)
    assert ratios["peers"] == pytest.approx(2.04, abs=0.03)
    assert ratios["cps"] == pytest.approx(0.97, abs=0.01)
