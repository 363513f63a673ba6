"""benchmarks/aggregate_eval.py: mean ± interval per model over several evaluate.py tables, and differences with Welch intervals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rldiff.metrics import difference_interval

ROOT = Path(__file__).resolve().parents[2]


def _write_tables(tmp_path: Path) -> list[str]:
    fid = {"a": [10.0, 11.0, 12.0], "b": [20.0, 22.0, 24.0], "c": [10.5, 11.5, 10.0]}
    paths = []
    for i in range(3):
        columns = {m: {"fid": v[i], "quality": 0.5 + 0.1 * i} for m, v in fid.items()}
        p = tmp_path / f"seed{i}" / "table.json"
        p.parent.mkdir()
        p.write_text(json.dumps({"columns": columns, "labels": {"fid": "FID (Sprites frames)"}}))
        paths.append(str(p))
    return paths


def test_welch_difference_interval_by_hand():
    # a: mean 2, var 1; b: mean 5, var 4; n = 3 each -> se^2 = 1/3 + 4/3 = 5/3
    # Welch df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = 25/9 / (17/18) = 2.94 -> floor 2 -> t = 4.303
    diff, half = difference_interval([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])
    assert diff == pytest.approx(-3.0) and half == pytest.approx(4.303 * math.sqrt(5 / 3))
    # equal variances and sizes: df = 2 (n - 1) = 4 -> t = 2.776, the pooled interval
    diff, half = difference_interval([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert diff == pytest.approx(-1.0) and half == pytest.approx(2.776 * math.sqrt(2 / 3))
    assert difference_interval([1.0, 1.0], [2.0, 2.0]) == (-1.0, 0.0)
    with pytest.raises(ValueError, match=r"each sample needs >= 2 values, got 1 and 3"):
        difference_interval([1.0], [1.0, 2.0, 3.0])


def test_aggregate_prints_means_intervals_and_marks_real_differences(tmp_path):
    paths = _write_tables(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "aggregate_eval.py"), *paths, "--versus", "a"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| model | n | FID | quality |" in out
    assert f"| a | 3 | 11 ± {4.303 / math.sqrt(3):.2g} |" in out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    # b - a = +11, clearly beyond the noise; c - a = -0.33, inside it; the same quality in every model: 0 ± 0
    assert rows["b"].split(" | ")[1].endswith("*") and rows["b"].split(" | ")[1].startswith("+11 ±")
    assert rows["c"].split(" | ")[1].startswith("-0.3333 ±") and not rows["c"].split(" | ")[1].endswith("*")


def test_aggregate_names_a_bad_model_and_a_bad_file(tmp_path):
    paths = _write_tables(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "aggregate_eval.py"), *paths, "--versus", "zz"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode != 0 and "--versus: expected one of the models ['a', 'b', 'c'], got 'zz'" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": {}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "aggregate_eval.py"), str(bad)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode != 0 and f"{bad}: expected an examples/evaluate.py table.json with a 'columns' mapping" in proc.stderr
