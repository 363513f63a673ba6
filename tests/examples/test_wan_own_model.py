"""The README's "use your own model" command, as printed, on a complete tiny diffusers Wan I2V directory.

``benchmarks/make_tiny_wan.py`` writes the directory (transformer, VAE, UMT5 text
encoder and tokenizer, CLIP image encoder, scheduler, plus the aesthetic reward's
CLIP and LAION head); the command from README.md runs as a subprocess with its
``/models/...`` paths pointed there, at a tiny budget, for two GRPO iterations with
activation checkpointing, bf16 compute (where this CPU has bf16 matmul) and LoRA on.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import importlib.util

import pytest
import torch

HAS_PEFT = importlib.util.find_spec("peft") is not None  # LoRA is the [lora] extra
ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "controls.num_frames=9", "grpo.num_controls=2", "grpo.group_size=2", "grpo.minibatch_size=null", "grpo.micro_batch_size=2",
    "run.iterations=2", "run.eval_clips=2", "run.eval_draws=1", "run.video_clips=1", "run.tensorboard=false", "controls.image_size=32",
]  # fmt: skip


def readme_command() -> list[str]:
    """The bash block after "**Your own model.**" in README.md, as argv."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Your own model.**") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return shlex.split(block.replace("\\\n", " "))


def bf16_matmul_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        return True
    except RuntimeError:
        return False


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_wan") / "wan-i2v"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_tiny_wan.py"), str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_tiny_wan_directory_is_complete_and_loads(tiny_wan):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, CLIPVisionModel, UMT5EncoderModel

    for name in ("model_index.json", "transformer/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer/tokenizer.json", "image_encoder/config.json", "scheduler/scheduler_config.json"):
        assert (tiny_wan / name).is_file(), name
    tr = WanTransformer3DModel.from_pretrained(tiny_wan / "transformer")
    assert tr.config.in_channels == 36 and tr.config.out_channels == 16 and tr.config.image_dim is not None  # Wan I2V's layout
    assert AutoencoderKLWan.from_pretrained(tiny_wan / "vae").config.z_dim == 16
    assert UMT5EncoderModel.from_pretrained(tiny_wan / "text_encoder").config.d_model == tr.config.text_dim
    assert CLIPVisionModel.from_pretrained(tiny_wan / "image_encoder").config.hidden_size == tr.config.image_dim
    assert AutoTokenizer.from_pretrained(tiny_wan / "tokenizer")("a red sprite")["input_ids"][-1] == 1  # </s>


def test_readme_own_model_command_runs_two_iterations_with_checkpointing_bf16_and_lora(tiny_wan, tmp_path):
    argv = readme_command()
    assert argv[:3] == ["python", "examples/ar_drag_grpo.py", "policy=wan"]
    paths = {"/models/wan-i2v": str(tiny_wan), "/models/clip-vit-l-14": str(tiny_wan / "aesthetic" / "clip"), "/models/laion_head.pth": str(tiny_wan / "aesthetic" / "head.pth")}
    for old, new in paths.items():
        argv = [a.replace(old, new) for a in argv]
    assert not [a for a in argv if "/models/" in a], argv
    dtype = "bfloat16" if bf16_matmul_works() else "float32"
    run_dir = tmp_path / "run"
    rank = 4 if HAS_PEFT else 0
    overrides = [*TINY, "policy.checkpointing=true", f"policy.compute_dtype={dtype}", f"policy.lora_rank={rank}", f"hydra.run.dir={run_dir}"]
    argv = [sys.executable, *argv[1:], *overrides]  # later overrides win (controls.image_size)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["updates"]) == 1.0 for r in rows)
    assert abs(float(rows[0]["ratio_mean_first"]) - 1.0) < 1e-3  # on-policy before the first update, in bf16 too
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "checkpointing: true" in config and f"compute_dtype: {dtype}" in config and f"lora_rank: {rank}" in config and "image_size: 32" in config
    if not HAS_PEFT:
        return
    assert float(rows[0]["loss_kl"]) == 0.0  # the reference is the base (adapters start at zero)
    assert sorted(p.name for p in (run_dir / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    # the adapters load into the base transformer (plain Wan dir + trajectory channels) and run
    from policies import CausalWan
    from policies.lora import load_lora, lora_layers

    model = load_lora(CausalWan.from_pretrained(tiny_wan / "transformer", extra_in_channels=16), run_dir / "lora")
    assert lora_layers(model)
