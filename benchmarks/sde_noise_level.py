"""How much noise do the stochastic steps leave with few coarse steps? Gaussian data, exact velocity.

Data ``x0 ~ N(0, s0^2 I)`` and the exact velocity of that Gaussian (closed form,
below), so the only error is the sampler's: the marginal std at ``sigma`` should
be ``sqrt((1 - sigma)^2 s0^2 + sigma^2)`` and the final sample's std ``s0``.
Every step is linear in ``x`` (``v = c(sigma) x``), so the std is propagated
exactly through the real step objects: a step maps ``Var -> a^2 Var + std^2``
with ``a`` = the step's mean at ``x = 1`` (noise 0) and ``std`` the step's own.
A Monte-Carlo run of the same steps (``--samples``) checks the final std.

Steps compared: ``EulerMaruyamaStep(eta, sigma_cap=0.99)`` (rldiff's old cap),
``EulerMaruyamaStep(eta)`` (the peers' convention at sigma = 1: first-step std =
eta), ``CPSStep(0.5)``, and the ODE. Masks: every step but the last stochastic
(``AllSteps``), and for N = 3 AR-Drag's selective stochasticity (one step per
frame: step 0 or step 1).

    python benchmarks/sde_noise_level.py            # ~1 s on one CPU core
"""

from __future__ import annotations

import argparse
import math

import torch

from rldiff.flow import CPSStep, EulerMaruyamaStep, ode_step, shifted_sigmas


def gaussian_velocity(x, sigma: float, s0: float):
    """Exact ``E[eps - x0 | x_sigma]`` for ``x0 ~ N(0, s0^2)``: ``(sigma - (1 - sigma) s0^2) / V * x``, ``V = Var(x_sigma)``."""
    var = (1 - sigma) ** 2 * s0**2 + sigma**2
    return (sigma - (1 - sigma) * s0**2) / var * x


def exact_std(sigma: float, s0: float) -> float:
    return math.sqrt((1 - sigma) ** 2 * s0**2 + sigma**2)


def step_fn(method: str, eta: float):
    """``(x, v, sigma, sigma_next, stochastic, generator) -> x_next`` for one of the compared steps."""
    step = {"EM cap 0.99": lambda: EulerMaruyamaStep(eta, sigma_cap=0.99), "EM peers": lambda: EulerMaruyamaStep(eta),
            "CPS": lambda: CPSStep(eta), "ODE": lambda: None}[method]()  # fmt: skip

    def run(x, v, s, s_next, stochastic, generator=None, noise=None):
        if step is None or not stochastic:
            return ode_step(x, v, s, s_next), torch.zeros(())
        x_next, mean, std = step(x, v, s, s_next, noise=noise, generator=generator)
        return (mean if noise is not None else x_next), std

    return run


def propagate(method: str, eta: float, sigmas: list[float], mask: list[bool], s0: float) -> list[float]:
    """Exact std of ``x`` at ``sigma_1 .. sigma_N`` (starting from ``x ~ N(0, 1)`` at sigma_0 = 1)."""
    run, var, out = step_fn(method, eta), 1.0, []
    one = torch.ones(1, dtype=torch.float64)
    for n, stochastic in enumerate(mask):
        s, s_next = sigmas[n], sigmas[n + 1]
        mean, std = run(one, gaussian_velocity(one, s, s0), s, s_next, stochastic, noise=torch.zeros_like(one))
        var = float(mean) ** 2 * var + float(std) ** 2
        out.append(math.sqrt(var))
    return out


def monte_carlo(method: str, eta: float, sigmas: list[float], mask: list[bool], s0: float, samples: int, seed: int = 0) -> float:
    """Final sample std from ``samples`` draws through the same steps."""
    run, g = step_fn(method, eta), torch.Generator().manual_seed(seed)
    x = torch.randn(samples, generator=g, dtype=torch.float64)  # [samples]
    for n, stochastic in enumerate(mask):
        x, _ = run(x, gaussian_velocity(x, sigmas[n], s0), sigmas[n], sigmas[n + 1], stochastic, generator=g)
    return float(x.std())


METHODS = [("EM cap 0.99", 0.7), ("EM cap 0.99", 1.0), ("EM peers", 0.7), ("EM peers", 1.0), ("CPS", 0.5), ("ODE", 0.0)]


def table(title: str, cases, s0: float, samples: int) -> None:
    print(f"\n### {title}\n")
    print("| N | shift | mask | step | eta | std / exact marginal at sigma_1 .. sigma_N | max | final std / s0 | MC check |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_steps, shift, mask_name, mask in cases:
        sigmas = shifted_sigmas(n_steps, shift).double().tolist()
        for method, eta in METHODS:
            stds = propagate(method, eta, sigmas, mask, s0)
            ratios = [sd / exact_std(s, s0) for sd, s in zip(stds, sigmas[1:])]
            mc = monte_carlo(method, eta, sigmas, mask, s0, samples) / s0 if samples else float("nan")
            eta_txt = "-" if method == "ODE" else f"{eta:g}"
            per_step = " ".join(f"{r:.2f}" for r in ratios)
            print(f"| {n_steps} | {shift:g} | {mask_name} | {method} | {eta_txt} | {per_step} | {max(ratios):.2f} | {stds[-1] / s0:.3f} | {mc:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s0", type=float, default=0.5, help="data std")
    parser.add_argument("--samples", type=int, default=100_000, help="Monte-Carlo draws for the check column (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"Gaussian data s0 = {args.s0}, exact velocity; the last step is always ODE (exclude_last)")
    all_but_last = [(n, shift, "all but last", [True] * (n - 1) + [False]) for n in (3, 10) for shift in (1.0, 3.0, 5.0)]
    table("Every step but the last stochastic (AllSteps)", all_but_last, args.s0, args.samples)
    selective = [(3, shift, f"step {k} only", [j == k for j in range(3)]) for shift in (1.0, 3.0, 5.0) for k in (0, 1)]
    table("AR-Drag's selective stochasticity, N = 3 (one stochastic step per frame)", selective, args.s0, args.samples)


if __name__ == "__main__":
    main()
