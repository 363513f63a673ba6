"""AR-Drag Step 1 as a subprocess with a tiny budget: teacher, distillation, evaluation, export, resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "dim=32", "heads=2", "layers=1", "batch_size=2", "teacher_iterations=3", "distill_iterations=3",
    "generator_every=2", "checkpoint_every=1", "eval_clips=2", "teacher_eval_steps=2", "tensorboard=false",
]  # fmt: skip


def run(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "examples" / "ar_drag_distill.py"), f"hydra.run.dir={out}", *TINY, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_distill_runs_end_to_end_exports_and_resumes(tmp_path):
    out, export = tmp_path / "run", tmp_path / "bundle"
    proc = run(out, f"export_dir={export}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "eval.json").read_text())
    assert list(rows) == ["teacher", "student (undistilled)", "student (SelfRollout)"]
    assert all(0.0 <= r["quality"] <= 1.0 and r["trajectory_error"] >= 0.0 for r in rows.values())
    assert (out / "eval.md").read_text().startswith("| metric | teacher | student (undistilled) | student (SelfRollout) |")
    assert (out / "samples.gif").is_file() and (out / "logs" / "distill" / "metrics.csv").is_file()
    for name in ("teacher", "student"):
        assert (export / name / "config.json").is_file() and (export / name / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((export / "world.json").read_text())["num_steps"] == 3
    # both stages are done: a second run resumes them at their end and trains nothing more
    again = run(out, "rollout=self_rollout")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "teacher: resumed from iteration 3" in again.stdout and "distill: resumed from iteration 3" in again.stdout


def test_rollout_variant_is_a_config_group(tmp_path):
    proc = run(tmp_path / "tf", "rollout=teacher_forcing", "distill_iterations=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "student (TeacherForcing)" in (tmp_path / "tf" / "eval.md").read_text()
    bad = run(tmp_path / "bad", "rollout=self_forcinng")
    assert bad.returncode != 0 and "self_forcinng" in bad.stderr
