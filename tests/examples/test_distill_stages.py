"""The teacher stage of Step 1: its weight EMA is checkpointed, resumed and exported (the raw weights are not)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from examples.ar_drag.stages import TeacherStage, build_world  # noqa: E402
from rldiff.parallel import ema_decay_warmup  # noqa: E402


def tiny_cfg(**over) -> SimpleNamespace:
    cfg = dict(
        image_size=16, num_frames=3, codec_factor=4, heatmap_sigma=1.5, text_dim=8, dim=16, layers=1, heads=2,
        window=2, sink=1, num_steps=3, shift=3.0, seed=0, batch_size=2, teacher_lr=1e-3, teacher_ema=0.5, checkpoint_every=2,
    )  # fmt: skip
    cfg.update(over)
    return SimpleNamespace(**cfg)


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_teacher_ema_follows_the_weights_and_is_what_gets_exported(tmp_path):
    cfg = tiny_cfg()
    stage = TeacherStage(build_world(cfg), tmp_path / "teacher", tmp_path / "ckpt", cfg)
    ema = params(stage.teacher)  # the EMA starts as a copy of the initial weights
    for n in range(3):
        stage.step()
        decay = ema_decay_warmup(0.5, n)  # 0.1, 2/11, 0.5 (warmed up)
        ema = [decay * e + (1 - decay) * p for e, p in zip(ema, params(stage.teacher))]
    for e, mine in zip(stage.ema.parameters(), ema):
        torch.testing.assert_close(e, mine)
    stage.finish()
    exported = params(stage.load_final())
    assert all(torch.equal(a, b) for a, b in zip(exported, stage.ema.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(exported, stage.teacher.parameters()))
    # the EMA sits in the checkpoint and comes back on resume
    again = TeacherStage(build_world(cfg), tmp_path / "teacher2", tmp_path / "ckpt", cfg)
    again.resume()
    assert again.iteration == 2 and (tmp_path / "ckpt" / "ckpt-00000002" / "teacher_ema.safetensors").is_file()


def test_teacher_ema_zero_exports_the_raw_weights_and_bad_decay_is_an_error(tmp_path):
    cfg = tiny_cfg(teacher_ema=0.0)
    stage = TeacherStage(build_world(cfg), tmp_path / "teacher", tmp_path / "ckpt", cfg)
    stage.step()
    stage.finish()
    assert stage.ema is None
    assert all(torch.equal(a, b) for a, b in zip(params(stage.load_final()), stage.teacher.parameters()))
    with pytest.raises(ValueError, match=r"teacher_ema must be in \[0, 1\).*got 1.0"):
        TeacherStage(build_world(cfg), tmp_path / "t2", tmp_path / "c2", tiny_cfg(teacher_ema=1.0))


def test_ema_decay_warmup_rejects_a_decay_outside_zero_one():
    assert ema_decay_warmup(0.999, 0) == 0.1 and ema_decay_warmup(0.999, 10**6) == 0.999
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.5"):
        ema_decay_warmup(1.5, 3)
