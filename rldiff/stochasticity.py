"""Stochasticity schedules: which (frame, step) decisions are SDE steps (contract).

A schedule returns a bool mask ``[F, N]`` (``True`` = stochastic SDE step that
is trained, ``False`` = deterministic ODE step) drawn from an explicit
``torch.Generator``. Step ``n`` moves frame ``m`` from ``sigma_n`` to
``sigma_{n+1}``; the last step (``n = N - 1``, ending at ``sigma_N = 0``) is a
very sharp Gaussian and is excluded unless ``exclude_last=False``.

``mask`` also takes a keyword ``iteration`` (the trainer's iteration, default
0): schedules that move with training (:class:`ProgressiveWindow`) read it, the
others ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["StochasticitySchedule", "AllSteps", "OneStepPerFrame", "SlidingWindow", "ProgressiveWindow", "NoSteps"]


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
    """Base class: ``mask(num_frames, num_steps, generator, *, iteration=0) -> [F, N] bool``."""

    exclude_last: bool = True

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class AllSteps(StochasticitySchedule):
    """Every allowed step is an SDE step (Flow-GRPO, DanceGRPO)."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        _check(num_frames, num_steps)
        allowed = _allowed_steps(num_steps, self.exclude_last)
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[:, :allowed] = True
        return mask


@dataclass(frozen=True)
class NoSteps(StochasticitySchedule):
    """Pure ODE sampling (evaluation): no step is stochastic."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        _check(num_frames, num_steps)
        return torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]


@dataclass(frozen=True)
class OneStepPerFrame(StochasticitySchedule):
    """AR-Drag's selective stochasticity: one step per frame, drawn uniformly, ODE elsewhere."""

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        _check(num_frames, num_steps)
        allowed = _allowed_steps(num_steps, self.exclude_last)
        chosen = torch.randint(0, allowed, (num_frames,), generator=generator)  # [F]
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[torch.arange(num_frames), chosen] = True
        return mask


def _check_steps(steps, who: str) -> tuple[int, int] | None:
    """``steps = (lo, hi)`` with ``0 <= lo < hi`` ints (or None), checked at construction."""
    if steps is None:
        return None
    if not isinstance(steps, (str, bytes)) and hasattr(steps, "__len__") and hasattr(steps, "__iter__"):
        steps = tuple(steps)  # a list, or a Hydra ListConfig
    ok = isinstance(steps, tuple) and len(steps) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in steps)
    if not ok or not 0 <= steps[0] < steps[1]:
        raise ValueError(f"{who}: steps must be a pair (lo, hi) of ints with 0 <= lo < hi (the window lies in steps lo .. hi-1), got {steps!r}")
    return int(steps[0]), int(steps[1])


def _step_range(steps: tuple[int, int] | None, num_steps: int, exclude_last: bool, who: str) -> tuple[int, int]:
    """The range ``[lo, hi)`` of steps a window may use for ``num_steps``: ``steps`` or every allowed step."""
    allowed = _allowed_steps(num_steps, exclude_last)
    if steps is None:
        return 0, allowed
    lo, hi = steps
    if hi > allowed:
        last = " (the last step is excluded: exclude_last=True)" if exclude_last else ""
        raise ValueError(f"{who}: steps={steps} reaches step {hi - 1}, but num_steps={num_steps} allows steps 0 .. {allowed - 1}{last}")
    return lo, hi


@dataclass(frozen=True)
class SlidingWindow(StochasticitySchedule):
    """A window of ``window`` consecutive stochastic steps per frame, at a random place (Flow-GRPO-Fast).

    The window start is drawn uniformly among the starts that keep the window
    inside the allowed steps, one draw per call shared by all frames, so that
    every frame has the same stochastic steps. ``steps = (lo, hi)`` limits the
    window to steps ``lo .. hi-1`` (Flow-GRPO-Fast's ``sde_window_range``:
    start uniform in ``lo .. hi - window``); ``None`` allows every step
    (``0 .. N-2`` with ``exclude_last``).
    """

    window: int = 2
    steps: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _check_steps(self.steps, "SlidingWindow"))

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        _check(num_frames, num_steps)
        lo, hi = _step_range(self.steps, num_steps, self.exclude_last, "SlidingWindow")
        if not 1 <= self.window <= hi - lo:
            raise ValueError(f"SlidingWindow: window must lie in [1, {hi - lo}] for steps {lo} .. {hi - 1} (num_steps={num_steps}), got {self.window}")
        start = lo + int(torch.randint(0, hi - lo - self.window + 1, (1,), generator=generator))
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[:, start : start + self.window] = True
        return mask


@dataclass(frozen=True)
class ProgressiveWindow(StochasticitySchedule):
    """MixGRPO's "progressive" window: it moves from early (noisy) to late steps as training goes on.

    At training iteration ``i`` the window starts at ``lo + j * stride`` with
    ``j = i // interval`` (it holds each place for ``interval`` iterations, then
    moves ``stride`` steps), and covers ``window`` steps, cut at ``hi`` (the
    last places give a shorter window, as in MixGRPO). The starts are
    ``lo, lo + stride, ...`` below ``hi``; past the last one the window goes
    back to ``lo`` (``roll_back=True``, MixGRPO's released setting) or stays at
    the last start (``roll_back=False``). ``steps = (lo, hi)`` limits it to
    steps ``lo .. hi-1`` (default every allowed step). The mask is the same for
    every frame and needs no generator.

    MixGRPO's defaults (25 sampling steps): ``window = 4`` (their
    ``group_size``), ``interval = 25`` (``iters_per_group``), ``stride = 1``
    (``prog_overlap_step``), roll back. Differences: MixGRPO also visits the
    start ``hi`` itself, an empty window (no step trained that iteration),
    which is skipped here; its range stops one step earlier than its comment
    says (steps ``0 .. N-3``; here ``steps=(0, N - 2)`` reproduces that).
    """

    window: int = 2
    interval: int = 25
    stride: int = 1
    steps: tuple[int, int] | None = None
    roll_back: bool = True

    def __post_init__(self) -> None:
        for name in ("window", "interval", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ProgressiveWindow: {name} must be a positive int, got {value!r}")
        object.__setattr__(self, "steps", _check_steps(self.steps, "ProgressiveWindow"))

    def window_at(self, num_steps: int, iteration: int) -> tuple[int, int]:
        """``(first, end)``: the window covers steps ``first .. end-1`` at ``iteration``."""
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise ValueError(f"ProgressiveWindow: iteration must be an int >= 0, got {iteration!r}")
        lo, hi = _step_range(self.steps, num_steps, self.exclude_last, "ProgressiveWindow")
        places = -(-(hi - lo) // self.stride)  # ceil: starts lo, lo + stride, ... < hi
        j = iteration // self.interval
        j = j % places if self.roll_back else min(j, places - 1)
        first = lo + j * self.stride
        return first, min(first + self.window, hi)

    def mask(self, num_frames: int, num_steps: int, generator: torch.Generator | None = None, *, iteration: int = 0) -> Tensor:
        _check(num_frames, num_steps)
        first, end = self.window_at(num_steps, iteration)
        mask = torch.zeros(num_frames, num_steps, dtype=torch.bool)  # [F, N]
        mask[:, first:end] = True
        return mask
