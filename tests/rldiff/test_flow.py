"""Flow math: SDE/ODE steps, log-densities, sigma schedules."""

import math

import pytest
import torch

from rldiff.flow import cps_step, flow_grpo_diffusion, gaussian_log_prob, ode_step, sde_step, shift_sigma, shifted_sigmas


def gaussian_velocity(x, sigma, s0):
    """Exact velocity for data x0 ~ N(0, s0^2 I) under x = (1-sigma) x0 + sigma eps.

    Var(x) = (1-sigma)^2 s0^2 + sigma^2 =: V, E[x0|x] = (1-sigma) s0^2 / V x,
    E[eps|x] = sigma / V x, so v = E[eps - x0 | x] = (sigma - (1-sigma) s0^2) / V * x.
    """
    var = (1 - sigma) ** 2 * s0**2 + sigma**2
    return (sigma - (1 - sigma) * s0**2) / var * x


def test_ode_step_is_euler():
    x, v = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 4.0])
    # x + (0.25 - 0.75) * v = [1 - 0.25, -2 - 2] = [0.75, -4]
    assert torch.allclose(ode_step(x, v, 0.75, 0.25), torch.tensor([0.75, -4.0]))


def test_sde_with_zero_diffusion_equals_ode():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    x_next, mean, std = sde_step(x, v, 0.8, 0.5, 0.0, generator=g)
    assert torch.equal(x_next, ode_step(x, v, 0.8, 0.5))
    assert torch.equal(mean, x_next)
    assert float(std) == 0.0


def test_sde_step_formula_by_hand():
    # x = 1, v = 2, sigma = 0.5, sigma_next = 0.25, diffusion = 1, noise = 1:
    # d = -0.25, eps_hat = 1 + 0.5 * 2 = 2, mean = 1 - 0.25 * (2 + 1/(2*0.5) * 2) = 1 - 0.25 * 4 = 0
    # std = 1 * sqrt(0.25) = 0.5, x_next = 0 + 0.5 * 1 = 0.5
    x_next, mean, std = sde_step(torch.ones(1), 2 * torch.ones(1), 0.5, 0.25, 1.0, noise=torch.ones(1))
    assert torch.allclose(mean, torch.zeros(1))
    assert torch.allclose(std, torch.tensor(0.5))
    assert torch.allclose(x_next, torch.tensor([0.5]))


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_sde_keeps_gaussian_marginal_over_many_steps(eta):
    """With the exact velocity of Gaussian data the SDE ends at the data marginal N(0, s0^2)."""
    s0, n, num = 0.5, 400, 200_000
    g = torch.Generator().manual_seed(1)
    sigmas = shifted_sigmas(n, 1.0).double()
    x = torch.randn(num, generator=g, dtype=torch.float64)
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        v = gaussian_velocity(x, s, s0)
        x, _, _ = sde_step(x, v, s, s_next, flow_grpo_diffusion(s, eta, 0.99), generator=g)
        if i == n // 2:  # halfway the marginal must be that of x_sigma too
            expect = math.sqrt((1 - s_next) ** 2 * s0**2 + s_next**2)
            assert abs(float(x.std()) - expect) < 0.02 * expect
    assert abs(float(x.mean())) < 0.01
    assert abs(float(x.std()) - s0) < 0.02 * s0


def test_sde_accepts_per_sample_levels():
    x, v = torch.randn(3, 2), torch.randn(3, 2)
    sigma = torch.tensor([0.9, 0.6, 0.3])[:, None]
    sigma_next = sigma - 0.1
    x_next, mean, std = sde_step(x, v, sigma, sigma_next, 0.5, noise=torch.zeros(3, 2))
    for i in range(3):
        _, m_i, s_i = sde_step(x[i], v[i], float(sigma[i]), float(sigma_next[i]), 0.5, noise=torch.zeros(2))
        assert torch.allclose(mean[i], m_i, atol=1e-6)
        assert torch.allclose(std[i], s_i, atol=1e-6)


def test_sde_rejects_increasing_sigma_and_bad_noise():
    with pytest.raises(ValueError, match="sigma_next <= sigma"):
        sde_step(torch.zeros(2), torch.zeros(2), 0.2, 0.5, 1.0)
    with pytest.raises(ValueError, match="noise"):
        sde_step(torch.zeros(2), torch.zeros(2), 0.5, 0.2, 1.0, noise=torch.zeros(3))


def test_bf16_inputs_are_computed_in_float32():
    x = torch.randn(4, 4).bfloat16()
    out = ode_step(x, x, 1.0, 0.5)
    assert out.dtype == torch.float32


def test_gaussian_log_prob_matches_torch_normal():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    std = torch.rand(5, generator=g) + 0.1
    expected = torch.distributions.Normal(mean, std.view(5, 1, 1, 1)).log_prob(x).flatten(1).mean(1)
    assert torch.allclose(gaussian_log_prob(x, mean, std), expected, atol=1e-5)
    assert torch.allclose(gaussian_log_prob(x, mean, 0.3), torch.distributions.Normal(mean, 0.3).log_prob(x).flatten(1).mean(1), atol=1e-5)


def test_gaussian_log_prob_rejects_zero_std():
    with pytest.raises(ValueError, match="std > 0"):
        gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


def test_flow_grpo_diffusion_by_hand():
    # eta * sqrt(sigma / (1 - sigma)) at sigma = 0.5: 0.7 * sqrt(1) = 0.7; at sigma = 1 the cap 0.99 applies
    assert flow_grpo_diffusion(0.5, 0.7) == pytest.approx(0.7)
    assert flow_grpo_diffusion(1.0, 1.0, 0.99) == pytest.approx(math.sqrt(1.0 / 0.01))
    t = flow_grpo_diffusion(torch.tensor([0.5, 1.0]), 1.0, 0.99)
    assert torch.allclose(t, torch.tensor([1.0, 10.0]))


def test_shifted_sigmas():
    s = shifted_sigmas(4, 1.0)
    assert torch.allclose(s, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    s3 = shifted_sigmas(2, 3.0)
    # u = 0.5 -> 3 * 0.5 / (1 + 2 * 0.5) = 0.75
    assert torch.allclose(s3, torch.tensor([1.0, 0.75, 0.0]))
    assert shift_sigma(0.5, 3.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="num_steps"):
        shifted_sigmas(0)


def test_cps_step_formula_by_hand():
    # x = 1, v = 2, sigma = 0.5, sigma_next = 0.25, eta = 0.6, noise = 1:
    # x0_hat = 1 - 0.5 * 2 = 0, eps_hat = 1 + 0.5 * 2 = 2, mean = 0.75 * 0 + sqrt(1 - 0.36) * 0.25 * 2 = 0.4
    # std = 0.6 * 0.25 = 0.15, x_next = 0.55
    x_next, mean, std = cps_step(torch.ones(1), 2 * torch.ones(1), 0.5, 0.25, 0.6, noise=torch.ones(1))
    assert torch.allclose(mean, torch.tensor([0.4]))
    assert torch.allclose(std, torch.tensor(0.15))
    assert torch.allclose(x_next, torch.tensor([0.55]))
    # eta -> 0 is the ODE step; sigma_next = 0 is the clean estimate with std 0
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    assert torch.allclose(cps_step(x, v, 0.8, 0.5, 1e-4, generator=g)[1], ode_step(x, v, 0.8, 0.5), atol=1e-6)
    _, mean, std = cps_step(x, v, 0.6, 0.0, 1.0, generator=g)
    assert torch.allclose(mean, x - 0.6 * v) and float(std) == 0.0


@pytest.mark.parametrize("eta", [0.3, 0.7, 1.0])
def test_cps_keeps_the_marginal_with_few_coarse_steps_where_euler_maruyama_does_not(eta):
    """AR-Drag's 3 shifted steps, both non-final steps stochastic, Gaussian data with its exact velocity."""
    s0, num = 0.5, 200_000
    sigmas = shifted_sigmas(3, 3.0).double()  # 1, 0.857, 0.6, 0
    expect = math.sqrt((1 - float(sigmas[2])) ** 2 * s0**2 + float(sigmas[2]) ** 2)  # std of x at sigma_2
    ends = {}
    for kind in ("ode", "cps", "flow_grpo"):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(num, generator=g, dtype=torch.float64)
        for i in range(2):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            v = gaussian_velocity(x, s, s0)
            if kind == "ode":
                x = ode_step(x, v, s, s_next)
            elif kind == "cps":
                x, _, _ = cps_step(x, v, s, s_next, eta, generator=g)
            else:
                x, _, _ = sde_step(x, v, s, s_next, flow_grpo_diffusion(s, eta, 0.99), generator=g)
        ends[kind] = float(x.std())
    assert abs(ends["ode"] - expect) < 0.05 * expect  # coarse Euler is already close
    assert abs(ends["cps"] - ends["ode"]) < 0.03 * expect  # the injected noise does not widen it
    assert ends["flow_grpo"] > 1.2 * expect  # Euler-Maruyama leaves excess noise (4x at eta = 1)


def test_cps_rejects_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"eta must lie in \(0, 1\], got 1.5"):
        cps_step(x, x, 0.8, 0.5, 1.5)
    with pytest.raises(ValueError, match=r"eta must lie in \(0, 1\], got 0.0"):
        cps_step(x, x, 0.8, 0.5, 0.0)
    with pytest.raises(ValueError, match="need sigma_next <= sigma"):
        cps_step(x, x, 0.5, 0.8, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        cps_step(x, torch.zeros(3, 2), 0.8, 0.5, 0.5)
