"""Rectified-flow sampler steps and Gaussian log-densities (contract).

Convention: ``x_sigma = (1 - sigma) * x0 + sigma * eps`` and the model predicts
the velocity ``v = eps - x0``. Noise levels run from ``sigma_0 = 1`` down to
``sigma_N = 0``. Every function is a pure function of its arguments; all
arithmetic is done in float32 (or float64 when the inputs are float64) and the
result is returned in that precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "ode_step",
    "sde_step",
    "cps_step",
    "flow_grpo_diffusion",
    "gaussian_log_prob",
    "shifted_sigmas",
    "shift_sigma",
    "StochasticStep",
    "CPSStep",
    "EulerMaruyamaStep",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _as_float(x: Tensor) -> Tensor:
    """Upcast half precisions to float32; keep float32/float64 as they are."""
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a floating-point tensor, got dtype {x.dtype}")
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _level(value: float | Tensor, like: Tensor, name: str) -> float | Tensor:
    """A noise level as a float or a tensor in ``like``'s dtype and device."""
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype)
    if isinstance(value, (int, float)):
        return float(value)
    raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")


def _step_inputs(x: Tensor, v: Tensor, sigma, sigma_next, who: str):
    """Shared checks of a sampler step: float ``x, v`` of one shape, levels as floats/tensors, noise to data."""
    x, v = _as_float(x), _as_float(v)
    if x.shape != v.shape:
        raise ValueError(f"x and v must have the same shape, got x {tuple(x.shape)} and v {tuple(v.shape)}")
    sigma, sigma_next = _level(sigma, x, "sigma"), _level(sigma_next, x, "sigma_next")
    if not isinstance(sigma, Tensor) and not isinstance(sigma_next, Tensor) and sigma_next > sigma:
        raise ValueError(f"{who} runs from noise to data: need sigma_next <= sigma, got {sigma_next} > {sigma}")
    return x, v, sigma, sigma_next


def _sample(mean: Tensor, std: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """``mean + std * noise``; ``noise`` defaults to a standard normal draw from ``generator``."""
    if noise is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    elif noise.shape != mean.shape:
        raise ValueError(f"noise must have x's shape {tuple(mean.shape)}, got {tuple(noise.shape)}")
    return mean + std * _as_float(noise).to(mean.dtype)


def ode_step(x: Tensor, v: Tensor, sigma: float | Tensor, sigma_next: float | Tensor) -> Tensor:
    """Euler step of the probability-flow ODE: ``x + (sigma_next - sigma) * v``."""
    x, v = _as_float(x), _as_float(v)
    sigma, sigma_next = _level(sigma, x, "sigma"), _level(sigma_next, x, "sigma_next")
    return x + (sigma_next - sigma) * v


def sde_step(
    x: Tensor,
    v: Tensor,
    sigma: float | Tensor,
    sigma_next: float | Tensor,
    diffusion: float | Tensor,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Euler-Maruyama step of the reverse SDE with the ODE's marginals.

    Returns ``(x_next, mean, std)``::

        d       = sigma_next - sigma                       (negative)
        eps_hat = x + (1 - sigma) * v                      (noise estimate)
        mean    = x + d * (v + diffusion**2 / (2 * sigma) * eps_hat)
        std     = diffusion * sqrt(-d)
        x_next  = mean + std * noise

    ``noise`` defaults to a standard normal draw from ``generator``. With
    ``diffusion = 0`` this is exactly :func:`ode_step` with ``std = 0``.
    ``std`` is returned broadcast to nothing more than its inputs' shapes
    (a 0-d tensor when every level is a float).
    """
    x, v, sigma, sigma_next = _step_inputs(x, v, sigma, sigma_next, "sde_step")
    diffusion = _level(diffusion, x, "diffusion")
    d = torch.as_tensor(sigma_next - sigma, dtype=x.dtype, device=x.device)
    eps_hat = x + (1.0 - sigma) * v
    drift = v
    if isinstance(diffusion, Tensor) or diffusion != 0.0:
        drift = v + diffusion**2 / (2.0 * sigma) * eps_hat
    mean = x + d * drift
    std = diffusion * torch.sqrt(-d)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return _sample(mean, std, noise, generator), mean, std


def cps_step(
    x: Tensor,
    v: Tensor,
    sigma: float | Tensor,
    sigma_next: float | Tensor,
    eta: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficient-preserving stochastic step (CPS): the next level's noise is partly fresh.

    Returns ``(x_next, mean, std)``::

        x0_hat  = x - sigma * v                                   (clean estimate)
        eps_hat = x + (1 - sigma) * v                             (noise estimate)
        mean    = (1 - sigma_next) * x0_hat + sqrt(1 - eta**2) * sigma_next * eps_hat
        std     = eta * sigma_next
        x_next  = mean + std * noise

    The noise coefficient of ``x_next`` is exactly ``sigma_next`` whatever the
    step size, so a large step never leaves excess noise in the sample (the
    Euler-Maruyama step of :func:`sde_step` does when steps are few and
    coarse). ``eta`` in ``(0, 1]`` is the fraction of the next noise level that
    is fresh; the mean is ``ode_step``'s when ``eta -> 0``. Idea from
    Coefficients-Preserving Sampling (Wang and Yu, 2025), where
    ``eta = sin(epsilon * pi / 2)``. ``sigma_next = 0`` gives ``std = 0``
    (:class:`CPSStep` refuses such a stochastic step).

    Log-probs against Flow-GRPO: here the action's log-prob is the exact
    Gaussian one (:func:`gaussian_log_prob`, with ``1 / (2 std^2)`` and the
    normalizing constants). Flow-GRPO's CPS log-prob is ``-mean((x - mu)^2)``
    without the ``1 / (2 std^2)`` factor or constants, so its ratios, and the
    clip ranges tuned on them, do not carry over to rldiff.
    """
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"cps_step: eta must lie in (0, 1], got {eta}")
    x, v, sigma, sigma_next = _step_inputs(x, v, sigma, sigma_next, "cps_step")
    x0_hat = x - sigma * v
    eps_hat = x + (1.0 - sigma) * v
    mean = (1.0 - sigma_next) * x0_hat + math.sqrt(1.0 - eta**2) * sigma_next * eps_hat
    std = torch.as_tensor(eta * sigma_next, dtype=x.dtype, device=x.device)
    return _sample(mean, std, noise, generator), mean, std


def flow_grpo_diffusion(
    sigma: float | Tensor,
    eta: float,
    sigma_cap: float | None = None,
    sigma_next: float | Tensor | None = None,
) -> float | Tensor:
    """Flow-GRPO's diffusion coefficient ``g = eta * sqrt(sigma / (1 - sigma))``, made finite at ``sigma = 1``.

    ``sqrt(sigma / (1 - sigma))`` is infinite at ``sigma = 1``; give one of:

    - ``sigma_next`` (the peers' convention: Flow-GRPO, DanceGRPO, MixGRPO):
      at ``sigma = 1`` the next level replaces sigma in the denominator,
      ``g = eta * sqrt(1 / (1 - sigma_next))``, so the first step's std
      ``g * sqrt(1 - sigma_next)`` is exactly ``eta`` whatever N. Elsewhere
      ``sigma_next`` is not used.
    - ``sigma_cap`` in ``(0, 1)`` (rldiff's older convention, opt-in):
      ``g = eta * sqrt(sigma / (1 - min(sigma, sigma_cap)))`` at every sigma;
      with 0.99 the first step's std is ``10 * eta * sqrt(1 - sigma_1)``.

    Giving both is an error (which convention is meant would be a guess). With
    neither, ``sigma < 1`` works and ``sigma = 1`` raises.
    """
    if sigma_cap is not None and sigma_next is not None:
        raise ValueError("flow_grpo_diffusion: give sigma_cap (old cap) or sigma_next (peers' convention at sigma = 1), not both")
    if sigma_cap is not None and not 0.0 < sigma_cap < 1.0:
        raise ValueError(f"flow_grpo_diffusion: sigma_cap must lie in (0, 1), got {sigma_cap}")
    tensor = isinstance(sigma, Tensor) or isinstance(sigma_next, Tensor)
    if isinstance(sigma, Tensor):
        s = _as_float(sigma)
    else:  # a float level: float64 (float32 when it meets a float32 tensor sigma_next), on sigma_next's device
        like = sigma_next if isinstance(sigma_next, Tensor) else None
        s = torch.tensor(float(sigma), dtype=like.dtype if like is not None and like.is_floating_point() else torch.float64,
                         device=like.device if like is not None else None)  # fmt: skip
        s = _as_float(s)
    if sigma_cap is not None:
        denom = s.clamp(max=sigma_cap)
    elif sigma_next is not None:
        s_next = torch.as_tensor(sigma_next, dtype=s.dtype, device=s.device)
        s, s_next = torch.broadcast_tensors(s, s_next)
        denom = torch.where(s >= 1.0, s_next, s)
    else:
        if bool((s >= 1.0).any()):
            raise ValueError(
                "flow_grpo_diffusion: sigma = 1 makes sqrt(sigma / (1 - sigma)) infinite; pass sigma_next "
                "(the peers' convention, first-step std = eta) or sigma_cap (e.g. 0.99, the old cap)"
            )
        denom = s
    g = eta * torch.sqrt(s / (1.0 - denom))
    return g if tensor else float(g)


# ----------------------------------------------------------------------------- stochastic steps as objects
@runtime_checkable
class StochasticStep(Protocol):
    """One stochastic sampler step: ``step(x, v, sigma, sigma_next, noise=None, generator=None) -> (x_next, mean, std)``.

    ``x, v`` are ``[batch, ...]`` (v the model's velocity at ``(x, sigma)``);
    ``sigma``, ``sigma_next`` floats or tensors broadcastable to ``x``. The
    action is ``x_next = mean + std * noise`` with ``noise ~ N(0, I)`` drawn
    from ``generator`` unless given; ``std`` broadcasts against ``x`` (a 0-d
    tensor when the levels are floats). The log-prob of the action is
    :func:`gaussian_log_prob` ``(x_next, mean, std)``. Implementations:
    :class:`CPSStep`, :class:`EulerMaruyamaStep`.
    """

    def __call__(
        self,
        x: Tensor,
        v: Tensor,
        sigma: float | Tensor,
        sigma_next: float | Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]: ...


def _check_number(who: str, name: str, value, lo: float, hi: float | None, lo_open: bool, expected: str) -> float:
    """``value`` as a float inside the range, else a ValueError/TypeError naming ``who.name``, the range and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{who}: {name} must be a float in {expected}, got {type(value).__name__} {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        raise ValueError(f"{who}: {name} must lie in {expected}, got {value}")
    return value


@dataclass(frozen=True)
class CPSStep:
    """Coefficient-preserving stochastic step (:func:`cps_step`) with fresh-noise fraction ``eta`` in ``(0, 1]``.

    ``std = eta * sigma_next``: a step to ``sigma_next = 0`` has no noise, so
    asking for it raises (exclude the last step from the stochasticity
    schedule, ``exclude_last=True``).
    """

    eta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", _check_number("CPSStep", "eta", self.eta, 0.0, 1.0, True, "(0, 1]"))

    def __call__(self, x, v, sigma, sigma_next, noise=None, generator=None) -> tuple[Tensor, Tensor, Tensor]:
        if bool((torch.as_tensor(sigma_next) <= 0).any()):
            raise ValueError(
                f"CPSStep(eta={self.eta}): a step to sigma_next = 0 has std = eta * sigma_next = 0, so it cannot be "
                "stochastic (no log-prob); keep the last step deterministic (schedule exclude_last=True)"
            )
        return cps_step(x, v, sigma, sigma_next, self.eta, noise=noise, generator=generator)


@dataclass(frozen=True)
class EulerMaruyamaStep:
    """Flow-GRPO's Euler-Maruyama step (:func:`sde_step`) with diffusion :func:`flow_grpo_diffusion`.

    ``eta > 0`` scales the diffusion. By default it follows the peers'
    convention at ``sigma = 1`` (``sigma_next`` in the denominator: the first
    step's std is ``eta`` whatever N); ``sigma_cap`` in ``(0, 1)`` opts into
    rldiff's older cap ``min(sigma, sigma_cap)`` instead.
    """

    eta: float
    sigma_cap: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", _check_number("EulerMaruyamaStep", "eta", self.eta, 0.0, None, True, "(0, inf)"))
        if self.sigma_cap is not None:
            cap = _check_number("EulerMaruyamaStep", "sigma_cap", self.sigma_cap, 0.0, 1.0, True, "(0, 1) or None")
            if cap >= 1.0:
                raise ValueError(f"EulerMaruyamaStep: sigma_cap must lie in (0, 1) or None, got {cap}")
            object.__setattr__(self, "sigma_cap", cap)

    def diffusion(self, sigma: float | Tensor, sigma_next: float | Tensor) -> float | Tensor:
        """The diffusion coefficient ``g`` of a step from ``sigma`` to ``sigma_next``."""
        if self.sigma_cap is not None:
            return flow_grpo_diffusion(sigma, self.eta, sigma_cap=self.sigma_cap)
        return flow_grpo_diffusion(sigma, self.eta, sigma_next=sigma_next)

    def __call__(self, x, v, sigma, sigma_next, noise=None, generator=None) -> tuple[Tensor, Tensor, Tensor]:
        return sde_step(x, v, sigma, sigma_next, self.diffusion(sigma, sigma_next), noise=noise, generator=generator)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float | Tensor) -> Tensor:
    """Elementwise ``Normal(mean, std)`` log-density of ``x``, averaged over all non-batch dims.

    ``x`` and ``mean`` are ``[batch, ...]``; ``std`` is a float or a tensor that
    broadcasts against them (``[batch]`` is read as one std per sample).
    Returns ``[batch]``.

    This is the exact log-density for every step, CPS included. Flow-GRPO's
    Euler-Maruyama log-prob is the same to float rounding; its CPS log-prob
    drops ``1 / (2 std^2)`` and the constants (``-mean((x - mu)^2)``), so
    ratios and clip ranges tuned there do not carry over to CPS here.
    """
    x, mean = _as_float(x), _as_float(mean)
    if x.shape != mean.shape:
        raise ValueError(f"x and mean must have the same shape, got {tuple(x.shape)} and {tuple(mean.shape)}")
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if std.dim() == 1 and x.dim() > 1 and std.shape[0] == x.shape[0]:
        std = std.view(-1, *([1] * (x.dim() - 1)))
    if bool((std <= 0).any()):
        raise ValueError("gaussian_log_prob needs std > 0 (a deterministic step has no log-prob)")
    logp = -((x - mean) ** 2) / (2.0 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return logp.flatten(1).mean(dim=1) if logp.dim() > 1 else logp


def shift_sigma(sigma: float | Tensor, shift: float) -> float | Tensor:
    """Timestep shift ``s * sigma / (1 + (s - 1) * sigma)`` (identity at ``s = 1``)."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def shifted_sigmas(num_steps: int, shift: float = 1.0) -> Tensor:
    """``[N+1]`` float32 noise levels from 1 to 0: ``linspace(1, 0, N+1)`` mapped by :func:`shift_sigma`."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    u = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)  # [N+1]
    return shift_sigma(u, shift).float()
