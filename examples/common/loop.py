"""The run loop every example job drives: resume, step to the end, log each iteration, show progress.

``drive(loop, iterations, log_dir, ...)`` works for anything with ``iteration``,
``step() -> metrics`` and ``resume() -> bool``: the GRPO trainer, the two
distillation stages, the toy job's trainer. Rank 0 logs; the others only step.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from rldiff import distributed as dist_utils


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


def drive(
    loop,
    iterations: int,
    log_dir: str | os.PathLike,
    *,
    desc: str,
    tensorboard: bool = True,
    show: tuple[str, ...] = ("reward_mean", "clip_fraction"),
    on_log: Callable[[list[dict[str, float]], bool], None] | None = None,
) -> list[dict[str, float]]:
    """Resume ``loop`` from its last checkpoint, then step it until ``loop.iteration == iterations``.

    Each iteration's metrics go to ``log_dir/metrics.csv`` (and TensorBoard) on
    rank 0, the ``show`` keys to the progress bar; ``on_log(rows, last)`` runs
    after each logged iteration (``last`` on the final one, also when nothing
    was left to do). Returns the logged rows (empty on other ranks).
    """
    main = dist_utils.rank() == 0
    if loop.resume() and main:
        print(f"{desc}: resumed from iteration {loop.iteration}")
    logger = MetricsLogger(log_dir, tensorboard=tensorboard, start_iteration=loop.iteration) if main else None
    bar = tqdm(total=iterations, initial=loop.iteration, desc=desc, dynamic_ncols=True, disable=not main)
    while loop.iteration < iterations:
        metrics = loop.step()
        bar.set_postfix({k: f"{metrics[k]:.3g}" for k in show if k in metrics})
        bar.update(1)
        if logger is not None:
            logger.log(metrics)
            if on_log is not None and loop.iteration < iterations:
                on_log(logger.rows, False)
    bar.close()
    if logger is None:
        return []
    logger.close()
    if on_log is not None:
        on_log(logger.rows, True)
    return logger.rows
