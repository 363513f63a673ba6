"""The toy GRPO example as a subprocess with a tiny budget, plus resume."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "examples" / "toy_grpo.py"), f"hydra.run.dir={out}", "pretrain_steps=300", "eval_samples=512", "tensorboard=false", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_toy_grpo_runs_learns_and_resumes(tmp_path):
    out = tmp_path / "run"
    proc = run(out, "iterations=12", "schedule=all_steps")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 12
    assert summary["reward_after"] > summary["reward_before"]
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 13 and rows[0].startswith("iteration,")
    # a finished run is not retrained; a longer budget continues from the checkpoint
    again = run(out, "iterations=12", "schedule=all_steps")
    assert again.returncode == 0 and "resumed from iteration 12" in again.stdout
    more = run(out, "iterations=15", "schedule=all_steps")
    assert more.returncode == 0 and "resumed from iteration 12" in more.stdout
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 16


def test_typo_in_override_is_a_hydra_error(tmp_path):
    proc = run(tmp_path / "typo", "iteratons=3")
    assert proc.returncode != 0
    assert "Key 'iteratons' not in 'ToyGRPOConfig'" in proc.stderr
    assert not (tmp_path / "typo" / "summary.json").exists()
