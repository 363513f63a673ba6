"""Mean and 95% Student-t interval of several ``examples/evaluate.py`` tables (e.g. a ``-m seed=0,1,2`` sweep), one row per model.

    python benchmarks/aggregate_eval.py multirun/<stamp>/*/eval/table.json
Columns that every table has; a model missing from a table is averaged over the tables that have it.
"""

from __future__ import annotations

import json
import sys

from rldiff.metrics import mean_interval

KEYS = ["latency_first_frame_s", "fps", "fid", "fvd", "aesthetic", "motion_smoothness", "objmc_px", "trajectory_error", "lost_fraction", "sprite_offset", "quality"]


def main(paths: list[str]) -> None:
    tables = [json.loads(open(p).read()) for p in paths]
    models = list(dict.fromkeys(m for t in tables for m in t["columns"]))
    keys = [k for k in KEYS if all(k in c for t in tables for c in t["columns"].values())]
    labels = tables[0].get("labels", {})
    print(f"{len(tables)} tables; cells: mean ± half-width of the 95% t interval over them\n")
    print("| model | n | " + " | ".join(labels.get(k, k).split(" (")[0] for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for m in models:
        cols = [t["columns"][m] for t in tables if m in t["columns"]]
        cells = []
        for k in keys:
            mean, half = mean_interval(c[k] for c in cols)
            cells.append(f"{mean:.4g} ± {half:.2g}" if half == half else f"{mean:.4g}")
        print(f"| {m} | {len(cols)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
