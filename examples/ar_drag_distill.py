"""AR-Drag Step 1 on Sprites-Drag: fine-tune a bidirectional motion-control teacher, distill a causal 3-step student.

Stages (each resumable from atomic safetensors checkpoints; a finished stage is skipped):
  1. teacher: flow matching of a bidirectional Wan with trajectory channels;
  2. distill: DMD + adversarial distillation into CausalWan, history from the
     chosen rollout variant (self_rollout = AR-Drag, self_forcing, teacher_forcing);
  3. eval: held-out trajectory error, quality and time per frame for the teacher,
     the undistilled student and the distilled student (eval.json, eval.md).

Launch:
    python examples/ar_drag_distill.py                                   # defaults, CPU
    python examples/ar_drag_distill.py -m rollout=self_rollout,self_forcing,teacher_forcing
    python examples/ar_drag_distill.py export_dir=examples/pretrained/sprites_drag   # refresh the bundle
    torchrun --nproc_per_node=2 examples/ar_drag_distill.py parallel=ddp   # batch split over processes (parallel=fsdp2 shards teacher, student, critic, EMA)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING

from examples.ar_drag.evaluation import bidirectional_sampler, causal_sampler, evaluate, results_table
from examples.ar_drag.stages import DistillStage, TeacherStage, build_world, student_from_teacher
from examples.common import configs
from examples.common.launch import DistConf, failing_clearly, is_main, launch
from examples.common.loop import drive
from examples.common.settings import check_finite, pin_settings
from examples.common.visualize import draw_tracks, save_video_grid
from rldiff import distributed as dist_utils
from rldiff.checkpoint import save_json
from rldiff.flow import shifted_sigmas


@dataclass
class RolloutConf:
    """Which history the student builds while distilling."""

    _target_: str = MISSING  # a policies.distill_rollouts class


@dataclass
class DistillConfig:
    """Step 1 on Sprites-Drag. Every field is a Hydra override (``name=value``)."""

    defaults: list[Any] = field(default_factory=lambda: [{"rollout": "self_rollout"}, {"parallel": "none"}, "_self_"])
    rollout: Any = MISSING  # rollout variant (config group: self_rollout, self_forcing, teacher_forcing)
    parallel: Any = MISSING  # gradient sync across torchrun processes, both stages (config group: none, ddp, fsdp2)
    seed: int = 0  # seeds data, noise and initial weights
    image_size: int = 32  # Sprites-Drag frame size (pixels)
    num_frames: int = 8  # latent = pixel frames (PixelCodec, temporal factor 1)
    codec_factor: int = 4  # PixelCodec space-to-depth factor (C = 3 * factor^2)
    heatmap_sigma: float = 1.5  # trajectory Gaussian std in pixels
    text_dim: int = 32  # hash text embedding width
    dim: int = 96  # transformer width
    layers: int = 3  # transformer blocks
    heads: int = 4  # attention heads
    window: int = 7  # student KV window (frames, current included)
    sink: int = 1  # first frames kept in every window: frame 0 holds the reference image (the only conditioning on it)
    teacher_iterations: int = 8000  # teacher flow-matching steps (quality still rose from 3000 to 8000)
    teacher_lr: float = 5e-4  # teacher AdamW learning rate
    teacher_ema: float = 0.999  # decay of the teacher's weight EMA (warmed up as min(decay, (1+n)/(10+n))), the exported teacher; 0: raw weights
    teacher_path: str | None = None  # an existing teacher dir: skip stage 1
    batch_size: int = 8  # clips per step
    distill_iterations: int = 400  # distillation iterations (critic steps)
    num_steps: int = 3  # N, student steps per frame
    shift: float = 3.0  # timestep shift of the student's sigmas
    lr_generator: float = 1e-4  # student AdamW learning rate
    lr_critic: float = 2e-4  # critic + head AdamW learning rate
    generator_every: int = 1  # critic updates per generator update
    adv_weight: float = 0.05  # adversarial term weight (0: DMD only)
    eval_clips: int = 32  # held-out clips evaluated (one noise each)
    teacher_eval_steps: int = 20  # teacher sampling steps in the evaluation
    checkpoint_every: int = 50  # iterations between checkpoints
    export_dir: str | None = None  # copy teacher/ and student/ here at the end (the bundle)
    checkpointing: bool = False  # per-block activation checkpointing of the teacher's and the critic's passes with gradients
    tensorboard: bool = True  # also write TensorBoard scalars
    dist: DistConf = field(default_factory=DistConf)  # process group under torchrun (backend, timeout_s)


cs = ConfigStore.instance()
cs.store(name="ar_drag_distill", node=DistillConfig)
configs.register(cs)
for _name, _cls in (("self_rollout", "SelfRollout"), ("self_forcing", "SelfForcing"), ("teacher_forcing", "TeacherForcing")):
    cs.store(group="rollout", name=_name, node=RolloutConf(_target_=f"policies.distill_rollouts.{_cls}"))


FREE_SETTINGS = ("teacher_iterations", "distill_iterations", "checkpoint_every", "eval_clips", "teacher_eval_steps", "export_dir", "tensorboard", "parallel", "dist")  # may change on resume


def main(cfg: DistillConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir)
    check_finite(cfg)
    pin_settings(out, cfg, FREE_SETTINGS)  # a resume with other settings is refused, not mixed in
    torch.manual_seed(dist_utils.rank_seed(cfg.seed))
    world = build_world(cfg)
    parallel = instantiate(cfg.parallel)  # how both stages sync gradients under torchrun

    # Stage 1: teacher
    teacher_dir = Path(cfg.teacher_path) if cfg.teacher_path else out / "teacher"
    teacher_stage = TeacherStage(world, teacher_dir, out / "teacher_ckpt", cfg, parallel=parallel)
    if not cfg.teacher_path:
        drive(teacher_stage, cfg.teacher_iterations, out / "logs" / "teacher", desc="teacher", tensorboard=cfg.tensorboard, show=("loss",))
        teacher_stage.finish()
    teacher = teacher_stage.load_final()

    # Stage 2: distillation
    sigmas = shifted_sigmas(cfg.num_steps, cfg.shift)
    distill = DistillStage(world, teacher, instantiate(cfg.rollout), sigmas, out / "student", out / "distill_ckpt", cfg, parallel=parallel)
    untrained = student_from_teacher(teacher_dir, cfg)
    drive(distill, cfg.distill_iterations, out / "logs" / "distill", desc="distill", tensorboard=cfg.tensorboard, show=("loss_generator", "loss_critic"))
    distill.finish()
    if not is_main():  # rank 0 evaluates and exports
        return {}
    student = distill.load_final()

    # Stage 3: evaluation on held-out controls (one noise each, ODE sampling)
    control = world.heldout.heldout_controls().index(list(range(cfg.eval_clips)))
    latent_shape = (world.codec.latent_channels, *world.latent_size)
    samplers = {
        "teacher": bidirectional_sampler(teacher, world.encoder, latent_shape, cfg.num_frames, cfg.teacher_eval_steps, cfg.shift),
        "student (undistilled)": causal_sampler(untrained, world.encoder, world.codec, cfg.num_frames, cfg.num_steps, cfg.shift),
        f"student ({cfg.rollout._target_.rsplit('.', 1)[-1]})": causal_sampler(student, world.encoder, world.codec, cfg.num_frames, cfg.num_steps, cfg.shift),
    }
    rows, drawn = {}, []
    for name, sample in samplers.items():
        rows[name], (video, _) = evaluate(sample, world.codec, control, world.tracker, seed=cfg.seed + 7, sprites=True)
        rows[name]["quality"] = float(world.quality.score(video, control).mean())
        drawn += [draw_tracks(video[i], control.trajectory[i], control.visibility[i]) for i in range(2)]
    table = results_table(rows)
    save_json(out / "eval.json", rows, sort_keys=False)
    (out / "eval.md").write_text(table + "\n")
    print(table)
    save_video_grid(out / "samples.gif", drawn)

    if cfg.export_dir:
        export = Path(cfg.export_dir)
        for name, src in (("teacher", teacher_dir), ("student", out / "student")):
            if (export / name).resolve() == Path(src).resolve():
                continue  # teacher_path already points into the bundle: nothing to copy (and never delete the source)
            shutil.rmtree(export / name, ignore_errors=True)
            shutil.copytree(src, export / name)
        (export / "world.json").write_text(json.dumps(world.describe(), indent=2))
        print(f"exported teacher/ and student/ to {export}")
    return {"rows": rows}


@hydra.main(version_base=None, config_name="ar_drag_distill")
def _entry(cfg: DistillConfig) -> None:
    with failing_clearly(cfg.dist.timeout_s):
        main(cfg)


if __name__ == "__main__":
    launch(_entry)
