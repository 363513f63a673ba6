"""Stochasticity schedules: which (frame, step) decisions are SDE steps (contract).

A schedule returns a bool mask ``[F, N]`` (``True`` = stochastic SDE step that
is trained, ``False`` = deterministic ODE step) drawn from an explicit
``torch.Generator``. Step ``n`` moves frame ``m`` from ``sigma_n`` to
``sigma_{n+1}``; the last step (``n = N - 1``, ending at ``sigma_N = 0``) is a
very sharp Gaussian and is excluded unless ``exclude_last=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["StochasticitySchedule", "AllSteps", "OneStepPerFrame", "SlidingWindow", "NoSteps"]


def _check(num_frames: int, num_steps: int) -> None:
    for name, value in (("num_frames", num_frames), ("num_steps", num_steps)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _allowed_steps(num_steps: int, exclude_last: bool) -> int:
    allowed = num_steps - 1 if exclude_last else num_steps
    if allowed < 1:
        raise ValueError(
            f"num_steps={num_steps} with exclude_last=True leaves no step that may be stochastic; "
            "use num_steps >= 2 or exclude_last=False"
        )
    return allowed


@dataclass(frozen=True)
class StochasticitySchedule:
    """Base class: ``mask(num_frames, num_steps, generator) -> [F, N] bool``."""

    exclude_last: bool = True

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class AllSteps(StochasticitySchedule):
    """Every allowed step is an SDE step (Flow-GRPO, DanceGRPO)."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None) -> Tensor:
        _check(num_frames, num_steps)
        allowed = _allowed_steps(num_steps, self.exclude_last)
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[:, :allowed] = True
        return mask


@dataclass(frozen=True)
class NoSteps(StochasticitySchedule):
    """Pure ODE sampling (evaluation): no step is stochastic."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None) -> Tensor:
        _check(num_frames, num_steps)
        return torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]


@dataclass(frozen=True)
class OneStepPerFrame(StochasticitySchedule):
    """AR-Drag's selective stochasticity: one step per frame, drawn uniformly, ODE elsewhere."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None) -> Tensor:
        _check(num_frames, num_steps)
        allowed = _allowed_steps(num_steps, self.exclude_last)
        chosen = torch.randint(0, allowed, (num_frames,), generator=generator)  # [F]
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[torch.arange(num_frames), chosen] = True
        return mask


@dataclass(frozen=True)
class SlidingWindow(StochasticitySchedule):
    """A window of ``window`` consecutive stochastic steps per frame (MixGRPO, Flow-GRPO-Fast).

    The window start is drawn uniformly among the allowed starts, one draw per
    call shared by all frames, so that every frame has the same stochastic steps.
    """

    window: int = 2

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None) -> Tensor:
        _check(num_frames, num_steps)
        allowed = _allowed_steps(num_steps, self.exclude_last)
        if not 1 <= self.window <= allowed:
            raise ValueError(f"window must lie in [1, {allowed}] for num_steps={num_steps}, got {self.window}")
        start = int(torch.randint(0, allowed - self.window + 1, (1,), generator=generator))
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[:, start : start + self.window] = True
        return mask
