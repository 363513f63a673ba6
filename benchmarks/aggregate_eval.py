"""Mean and 95% Student-t interval of several ``examples/evaluate.py`` tables (e.g. a ``-m seed=0,1,2`` sweep), one row per model.

    python benchmarks/aggregate_eval.py multirun/<stamp>/*/eval/table.json
    python benchmarks/aggregate_eval.py ablation/*/eval/table.json --versus self_rollout

Columns that every table has; a model missing from a table is averaged over the tables that have it.
With ``--versus NAME`` a second table gives every other model's difference from ``NAME``: mean difference ±
the half-width of its 95% Welch interval (``rldiff.metrics.difference_interval``; the tables are taken as
independent runs, e.g. one training seed each), marked ``*`` where the interval excludes 0 (no interval where either model is in fewer than two tables).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rldiff.metrics import difference_interval, mean_interval

KEYS = ["latency_first_frame_s", "fps", "fid", "fvd", "aesthetic", "motion_smoothness", "objmc_px", "trajectory_error", "lost_fraction", "sprite_offset", "quality"]


def load_tables(paths: list[str]) -> list[dict]:
    tables = []
    for p in paths:
        table = json.loads(Path(p).read_text())
        if not isinstance(table, dict) or not isinstance(table.get("columns"), dict):
            raise ValueError(f"{p}: expected an examples/evaluate.py table.json with a 'columns' mapping")
        tables.append(table)
    if not tables:
        raise ValueError("aggregate_eval: no table.json given")
    return tables


def aggregate(tables: list[dict], versus: str | None = None) -> str:
    """The markdown of the mean ± interval table (and, with ``versus``, the difference table)."""
    models = list(dict.fromkeys(m for t in tables for m in t["columns"]))
    if versus is not None and versus not in models:
        raise ValueError(f"--versus: expected one of the models {models}, got {versus!r}")
    keys = [k for k in KEYS if all(k in c for t in tables for c in t["columns"].values())]
    labels = tables[0].get("labels", {})
    header = " | ".join(labels.get(k, k).split(" (")[0] for k in keys)
    values = {m: {k: [t["columns"][m][k] for t in tables if m in t["columns"]] for k in keys} for m in models}
    lines = [f"{len(tables)} tables; cells: mean ± half-width of the 95% t interval over them", ""]
    lines += [f"| model | n | {header} |", "|---|---|" + "---|" * len(keys)]
    for m in models:
        cells = [_cell(*mean_interval(values[m][k])) for k in keys]
        lines.append(f"| {m} | {len(values[m][keys[0]]) if keys else 0} | " + " | ".join(cells) + " |")
    if versus is not None:
        lines += ["", f"difference from {versus}: mean ± half-width of the 95% Welch interval; * = the interval excludes 0", ""]
        lines += [f"| model - {versus} | {header} |", "|---|" + "---|" * len(keys)]
        for m in models:
            if m == versus:
                continue
            cells = []
            for k in keys:
                a, b = values[m][k], values[versus][k]
                diff, half = difference_interval(a, b) if min(len(a), len(b)) >= 2 else (sum(a) / len(a) - sum(b) / len(b), float("nan"))
                cells.append(_cell(diff, half, signed=True) + (" *" if abs(diff) > half else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(mean: float, half: float, signed: bool = False) -> str:
    text = f"{mean:+.4g}" if signed else f"{mean:.4g}"
    return f"{text} ± {half:.2g}" if half == half else text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", help="table.json files written by examples/evaluate.py")
    parser.add_argument("--versus", default=None, help="a model name: also print every model's difference from it")
    args = parser.parse_args(argv)
    print(aggregate(load_tables(args.tables), args.versus))


if __name__ == "__main__":
    main()
