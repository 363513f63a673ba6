"""benchmarks/memory_wan.py: its activation model is exact on fresh measurements and its table covers every configuration.

Run at a small width (the fit's machinery, not the 1.3B figures: those are in docs/memory.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_memory_model_fits_the_cpu_measurements_and_prints_the_table():
    small = ["--dim", "64", "--ffn", "128", "--heads", "2", "--text-dim", "32", "--image-dim", "16"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory_wan.py"), *small], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # parameters of the real 1.3B I2V configuration, counted on the meta device
    total = float(re.search(r"CausalWan \(meta device\): ([\d.]+) B parameters", out).group(1))
    assert 1.4 < total < 1.7
    # the fitted model predicts a fifth measurement (3 layers, another tokens-per-frame) to within 2 %
    errors = [float(e) for e in re.findall(r"\(([\d.]+)% off\)", out)]
    assert len(errors) == 2 and max(errors) < 2.0, errors
    rows = [line for line in out.splitlines() if re.match(r"\| (fp32|bf16) \|", line)]
    assert len(rows) == 16  # precision x checkpointing x LoRA x processes
    cells = {tuple(c.strip() for c in r.split("|")[1:5]): float(r.split("|")[11]) for r in rows}  # -> total GB
    assert cells["bf16", "on", "r32", "8"] < cells["bf16", "off", "r32", "8"] < cells["fp32", "off", "r32", "8"]  # checkpointing, bf16 save
    assert cells["fp32", "off", "r32", "1"] < cells["fp32", "off", "off", "1"]  # LoRA saves grads, optimizer state, reference
    assert cells["fp32", "off", "off", "8"] < cells["fp32", "off", "off", "1"]  # FSDP2 shards the static terms
