"""examples/evaluate.py as a subprocess with a tiny budget: the bundled models, a run checkpoint, a user benchmark folder, bad entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from examples.ar_drag.benchmark import write_benchmark
from examples.ar_drag.components import BUNDLE
from policies import CausalWan
from rldiff.checkpoint import save_json, save_tensors
from rldiff.data.sprites import SpritesDrag

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "evaluate.py"
TINY = ["clips=3", "chunk=3", "latency_repeats=1", "latency_warmup=0", "video_clips=1", "teacher_steps=4"]


def run(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT), f"hydra.run.dir={tmp_path / 'run'}", f"reference_cache={tmp_path / 'cache'}", *TINY, *overrides]
    return subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def fake_run(path: Path) -> Path:
    """A GRPO run directory whose newest checkpoint holds the bundled student's weights as the policy (FlowPolicy keys)."""
    ckpt = path / "checkpoints" / "ckpt-00000001"
    state = CausalWan.from_pretrained(BUNDLE / "student").state_dict()
    save_tensors(ckpt / "policy.safetensors", {f"model.{k}": v for k, v in state.items()})
    save_json(ckpt / "state.json", {"iteration": 1})
    return path


def test_bundled_models_and_a_run_give_the_paper_columns(tmp_path):
    proc = run(tmp_path, f"models=[teacher,student,grpo@run:{fake_run(tmp_path / 'grpo')}]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run" / "eval"
    for name in ("table.md", "table.json", "chart.png", "videos_teacher.gif", "videos_student.gif", "videos_grpo.gif"):
        assert (out / name).is_file(), name
    table = json.loads((out / "table.json").read_text())
    cols = table["columns"]
    assert list(cols) == ["teacher", "student", "grpo"]
    for key in ("latency_first_frame_s", "fps", "fid", "fvd", "motion_smoothness", "objmc_px", "trajectory_error", "lost_fraction", "sprite_offset", "quality"):
        assert all(key in c for c in cols.values()), key
    # the run holds the bundled student's weights: same videos, same figures (latency aside)
    for key in ("fid", "fvd", "motion_smoothness", "trajectory_error", "objmc_px"):
        assert cols["grpo"][key] == cols["student"][key], key
    assert "not comparable with VBench" in (out / "table.md").read_text() and "FID (SpritesFrameFeatures)" in proc.stdout
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # FID and FVD reference statistics cached


def test_user_benchmark_folder_and_bad_model_entry(tmp_path):
    videos, control = SpritesDrag(image_size=32, num_frames=8, split="heldout").heldout_videos()
    folder = write_benchmark(tmp_path / "bench", control.index([0, 1, 2]), videos[:3])
    proc = run(tmp_path, f"benchmark={folder}", "models=[student]", "~fvd_features")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cols = json.loads((tmp_path / "run" / "eval" / "table.json").read_text())["columns"]
    assert "fid" in cols["student"] and "fvd" not in cols["student"] and "sprite_offset" not in cols["student"]
    bad = run(tmp_path, "models=[checkpoint:/x]")
    assert bad.returncode != 0 and "models: 'checkpoint:/x' is not one of" in bad.stderr


def test_model_entries_parse_and_bad_ones_name_the_entry():
    import pytest

    from examples.evaluate import parse_model

    assert parse_model("teacher") == ("teacher", "teacher", None)
    assert parse_model("sr@student") == ("sr", "student", None)
    assert parse_model("undistilled") == ("undistilled", "undistilled", None)
    # the student before distillation of another teacher (e.g. a teacher trained with another seed)
    assert parse_model("u1@undistilled:runs/t1/teacher") == ("u1", "undistilled", "runs/t1/teacher")
    assert parse_model("causal:runs/sf0/student") == ("causal:student", "causal", "runs/sf0/student")
    for bad in ("run", "causal", "bidirectional", "teacher:some/dir", "student:x", "policy:x", "nonsense"):
        with pytest.raises(ValueError, match=f"models: '{bad}' is not one of"):
            parse_model(bad)
