"""Pieces shared by the example scripts: schedule configs, metric logging, run directory helpers."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore


# ----------------------------------------------------------------------------- schedules
@dataclass
class OneStepPerFrameConf:
    """AR-Drag's selective stochasticity: one SDE step per frame."""

    _target_: str = "rldiff.stochasticity.OneStepPerFrame"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic


@dataclass
class AllStepsConf:
    """Every step stochastic (Flow-GRPO, DanceGRPO)."""

    _target_: str = "rldiff.stochasticity.AllSteps"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic


@dataclass
class SlidingWindowConf:
    """A window of consecutive stochastic steps (MixGRPO)."""

    _target_: str = "rldiff.stochasticity.SlidingWindow"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic
    window: int = 2  # stochastic steps per frame


@dataclass
class NoStepsConf:
    """Pure ODE (evaluation only: nothing to train)."""

    _target_: str = "rldiff.stochasticity.NoSteps"
    exclude_last: bool = True  # unused by NoSteps


def register_schedules(cs: ConfigStore) -> None:
    """Register the ``schedule`` config group: one_step_per_frame, all_steps, sliding_window, no_steps."""
    cs.store(group="schedule", name="one_step_per_frame", node=OneStepPerFrameConf)
    cs.store(group="schedule", name="all_steps", node=AllStepsConf)
    cs.store(group="schedule", name="sliding_window", node=SlidingWindowConf)
    cs.store(group="schedule", name="no_steps", node=NoStepsConf)


# ----------------------------------------------------------------------------- logging
class MetricsLogger:
    """Appends one row per iteration to ``metrics.csv`` and (optionally) TensorBoard.

    Resuming appends to the existing CSV after dropping rows at or past the
    resumed iteration, so the file never holds duplicates.
    """

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = True, start_iteration: int = 0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        self.rows: list[dict[str, float]] = []
        if self.csv_path.exists():
            with open(self.csv_path) as f:
                self.rows = [
                    {k: float(v) for k, v in row.items() if v != ""}
                    for row in csv.DictReader(f)
                    if float(row.get("iteration", "nan")) < start_iteration
                ]
        self._rewrite()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=start_iteration)

    def _rewrite(self) -> None:
        keys = sorted({k for row in self.rows for k in row}, key=lambda k: (k != "iteration", k))
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.csv_path)

    def log(self, metrics: dict[str, float]) -> None:
        self.rows.append(dict(metrics))
        self._rewrite()
        if self.writer is not None:
            step = int(metrics.get("iteration", len(self.rows) - 1))
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v) and k != "iteration":
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
