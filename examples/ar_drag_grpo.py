"""AR-Drag Step 2: GRPO with selective stochasticity on the causal student, through the AR denoising env.

Default: the bundled Sprites-Drag student on CPU; reward = per-track trajectory
hinge over Lucas-Kanade tracks (frame t scored by the hinge's change since t-1)
+ 0.7 log Sprites quality, each term normalized in its group before the
weighted sum; KL 0.01 to the start; lr 2e-4 falling linearly to 0;
coefficient-preserving stochastic steps, one per frame; the rollouts of a group
from one initial noise. Why each setting: docs/results.md.

Outputs in the run directory: metrics.csv, tensorboard/, plots.png,
videos_before.gif / videos_after.gif (target trajectory white, tracked red),
eval_before.json, eval.md / eval.json (held-out table before vs after RL),
checkpoints/ (a killed run resumes; a finished one is not retrained).

Launch:
    python examples/ar_drag_grpo.py
    python examples/ar_drag_grpo.py --cfg job          # print the whole config, run nothing
    python examples/ar_drag_grpo.py -m schedule=one_step_per_frame,all_steps grpo.kl_coef=0,0.01
    python examples/ar_drag_grpo.py policy=wan policy.path=... codec=wan_vae codec.local_dir=... reward=aesthetic ...  # README
    torchrun --nproc_per_node=2 examples/ar_drag_grpo.py parallel=ddp   # docs/distributed.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING, OmegaConf

from envs import ARVideoDenoisingVectorEnv
from policies.lora import BaseReference, save_lora
from examples.ar_drag import components
from examples.ar_drag.evaluation import env_sampler, evaluate, quality_warning, results_table
from examples.common import configs
from examples.common.launch import DistConf, failing_clearly, is_main, launch
from examples.common.loop import drive
from examples.common.settings import check_finite, pin_settings, require
from examples.common.visualize import draw_tracks, plot_metrics, save_video_grid
from rldiff import distributed as dist_utils
from rldiff.checkpoint import load_json, save_json
from rldiff.data.sprites import SpritesDrag
from rldiff.trainer import GRPOTrainer


@dataclass
class GRPOConf:
    """``GRPOTrainer`` keyword arguments (see rldiff.trainer.GRPOTrainer)."""

    lr: float = 2e-4  # AdamW learning rate at the start (Sprites-Drag student; AR-Drag used 1e-5 on Wan 1.3B)
    num_controls: int = 4  # B, controls per iteration
    group_size: int = 8  # G, rollouts per control
    gamma: float = 0.0  # reward-to-go discount over frames
    clip_range: float = 2e-3  # PPO clip epsilon
    adv_clip: float = 5.0  # advantage clamp
    kl_coef: float = 0.01  # KL weight to the frozen reference (0 lets the tracks drift; 0.1 holds the policy back)
    epochs: int = 1  # passes over each batch
    minibatch_size: int | None = 16  # rollouts per optimizer step (None: all)
    micro_batch_size: int | None = None  # rollouts per forward/backward, gradients accumulated over a minibatch (None: the minibatch)
    max_grad_norm: float = 1.0  # gradient-norm clip
    max_nonfinite_fraction: float = 0.25  # stop when more groups (or updates) than this are non-finite


@dataclass
class CollectorConf:
    """``envs.EnvCollector`` keyword arguments."""

    _target_: str = "envs.EnvCollector"
    shared_noise: bool = True  # a group's rollouts share the initial noise, so they differ only in the SDE steps


@dataclass
class RunConf:
    """The run around the trainer: length, checkpoints, held-out evaluation, outputs."""

    iterations: int = 150  # GRPO iterations
    checkpoint_every: int = 5  # iterations between checkpoints
    eval_clips: int = 64  # held-out controls in the before/after table (Sprites-Drag holds out 64)
    eval_draws: int = 3  # initial noises per held-out control (the table is over eval_clips * eval_draws videos)
    video_clips: int = 3  # held-out clips drawn in the before/after videos
    plot_every: int = 5  # iterations between plot refreshes
    seed: int = 0  # seeds controls, masks, noise
    tensorboard: bool = True  # also write TensorBoard scalars
    max_quality_drop: float = 0.5  # warn (stdout and eval.md) when held-out quality falls by more than this fraction


@dataclass
class ARDragGRPOConfig:
    """AR-Drag GRPO job. Every field is a Hydra override; `--cfg job` prints them all."""

    defaults: list[Any] = field(
        default_factory=lambda: [
            {"policy": "sprites_student"}, {"step": "cps"}, {"codec": "pixel"}, {"controls": "sprites"}, {"tracker": "lucas_kanade"},
            {"reward": "sprites"}, {"schedule": "one_step_per_frame"}, {"advantage": "per_term_renormalized"}, {"lr_schedule": "linear"},
            {"parallel": "none"}, "_self_",
        ]
    )  # fmt: skip
    policy: Any = MISSING  # the causal student (group: sprites_student, wan)
    step: Any = MISSING  # its stochastic step (group: cps, euler_maruyama)
    codec: Any = MISSING  # latents <-> pixels (group: pixel, wan_vae)
    controls: Any = MISSING  # control source (group: sprites)
    tracker: Any = MISSING  # point tracker of the reward and the evaluation (group: lucas_kanade, cotracker)
    reward: Any = MISSING  # reward (group: sprites, aesthetic)
    schedule: Any = MISSING  # stochasticity schedule (group: one_step_per_frame, all_steps, sliding_window, progressive_window, no_steps)
    advantage: Any = MISSING  # advantage estimator (group: per_term_renormalized, per_term, group)
    lr_schedule: Any = MISSING  # learning-rate schedule (group: linear, constant)
    parallel: Any = MISSING  # gradient sync across torchrun processes (group: none, ddp, fsdp2, fsdp2_blocks)
    collector: CollectorConf = field(default_factory=CollectorConf)  # how rollouts are collected
    grpo: GRPOConf = field(default_factory=GRPOConf)  # the trainer's settings
    run: RunConf = field(default_factory=RunConf)  # the run's length, evaluation and outputs
    dist: DistConf = field(default_factory=DistConf)  # process group under torchrun (backend, timeout_s)


cs = ConfigStore.instance()
cs.store(name="ar_drag_grpo", node=ARDragGRPOConfig)
components.register(cs)
configs.register(cs)

PLOT_KEYS = ["reward_mean", "reward/trajectory", "reward/trajectory/value", "reward/trajectory/lost", "reward/consistency", "reward/quality", "reward/aesthetic", "clip_fraction", "approx_kl", "loss_kl", "grad_norm", "lr"]


FREE_SETTINGS = ("run.iterations", "run.plot_every", "run.tensorboard", "run.max_quality_drop", "parallel", "dist")  # may change on resume
RESUME_HINTS = {
    "lr_schedule.total_iters": "The linear lr schedule ends at run.iterations unless set: to lengthen an annealed run, "
    "give lr_schedule.total_iters the run's value (its lr stays 0 past it) or start a new run.",
}


def validate(cfg: ARDragGRPOConfig, heldout_size: int | None = None) -> None:
    """Settings that make a run meaningless fail here, before anything is built or written (the parts check their own too)."""
    check_finite(cfg)
    require("grpo.num_controls", cfg.grpo.num_controls, low=1)
    require("grpo.group_size", cfg.grpo.group_size, low=2)  # group-relative advantages need two rollouts
    require("grpo.adv_clip", cfg.grpo.adv_clip, kind=float, low=1e-8)
    require("grpo.kl_coef", cfg.grpo.kl_coef, kind=float, low=0.0)
    require("grpo.lr", cfg.grpo.lr, kind=float, low=1e-12)
    require("grpo.clip_range", cfg.grpo.clip_range, kind=float, low=1e-12)
    require("grpo.minibatch_size", cfg.grpo.minibatch_size, low=1, allow_none=True)
    require("run.iterations", cfg.run.iterations, low=0)
    require("run.checkpoint_every", cfg.run.checkpoint_every, low=1)
    require("run.plot_every", cfg.run.plot_every, low=1)
    require("run.eval_clips", cfg.run.eval_clips, low=1, high=heldout_size)
    require("run.eval_draws", cfg.run.eval_draws, low=1)
    require("run.video_clips", cfg.run.video_clips, low=1, high=cfg.run.eval_clips)  # drawn from the evaluated clips
    require("run.max_quality_drop", cfg.run.max_quality_drop, kind=float, low=0.0, high=1.0)


def draw(video, tracks, control, clips: int) -> list:
    return [draw_tracks(video[i], control.trajectory[i], control.visibility[i], tracks[i]) for i in range(clips)]


def main(cfg: ARDragGRPOConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir)
    heldout = instantiate(cfg.controls, split="heldout").heldout_controls()  # the held-out split of the same world
    validate(cfg, heldout_size=heldout.batch_size)
    pin_settings(out, cfg, FREE_SETTINGS, RESUME_HINTS)  # a resume with other settings is refused, not mixed in
    torch.manual_seed(dist_utils.rank_seed(cfg.run.seed))

    # Build the world, the reward and the policy
    codec = instantiate(cfg.codec)
    controls = instantiate(cfg.controls)
    tracker = instantiate(cfg.tracker)
    reward = instantiate(cfg.reward, tracker=tracker)
    policy = instantiate(cfg.policy, codec=codec, step=cfg.step)  # the step config is instantiated inside (a dataclass object passed in would be read as a config)
    env = ARVideoDenoisingVectorEnv(
        cfg.grpo.num_controls * cfg.grpo.group_size, control_source=controls, codec=codec, reward=reward,
        num_steps=policy.num_steps, shift=policy.shift, frames_per_block=policy.frames_per_block,
    )  # fmt: skip
    collector = instantiate(cfg.collector, env=env)

    # The trainer (under torchrun: gradients synced by cfg.parallel, rank 0 checkpoints full tensors);
    # a LoRA policy's KL reference is itself with the adapters off, otherwise a frozen copy (sharing the encoders)
    lora = bool(getattr(cfg.policy, "lora_rank", 0))
    trainer = GRPOTrainer(
        policy, collector, controls, instantiate(cfg.schedule), **cfg.grpo, reference=BaseReference(policy) if lora and cfg.grpo.kl_coef > 0 else None,
        advantage=instantiate(cfg.advantage).with_default_weights(reward.term_weights), lr_schedule=instantiate(cfg.lr_schedule),
        parallel=instantiate(cfg.parallel), seed=cfg.run.seed, checkpoint_dir=out / "checkpoints", checkpoint_every=cfg.run.checkpoint_every,
    )  # fmt: skip

    # Evaluate before RL (once per run directory; every rank evaluates, rank 0 writes)
    heldout = heldout.index(list(range(cfg.run.eval_clips)))
    sprites = isinstance(controls, SpritesDrag)  # the Sprites-Drag world: add the tracker-free sprite offset

    def held_out() -> tuple[dict, tuple]:
        return evaluate(env_sampler(trainer), codec, heldout, tracker, draws=cfg.run.eval_draws, chunk=env.num_envs, seed=cfg.run.seed + 1, sprites=sprites)

    before_path = out / "eval_before.json"
    if not dist_utils.any_flag(not before_path.exists()):  # every rank decides alike (rank 0 writes it below)
        before = load_json(before_path)
    else:
        before, (video, tracks) = held_out()
        if is_main():
            save_video_grid(out / "videos_before.gif", draw(video, tracks, heldout, cfg.run.video_clips))
            save_json(before_path, before, sort_keys=False)

    # Collect and update
    def plot(rows: list, last: bool) -> None:
        if last or (rows[-1]["iteration"] + 1) % cfg.run.plot_every == 0:
            plot_metrics(out / "plots.png", rows, PLOT_KEYS)

    drive(trainer, cfg.run.iterations, out, desc="AR-Drag GRPO", tensorboard=cfg.run.tensorboard, on_log=plot)
    if trainer.iteration % trainer.checkpoint_every:
        trainer.save_checkpoint()
    if lora:  # the adapters alone (policies.lora.load_lora; merge_lora for a plain diffusers directory)
        save_lora(policy.model, out / "lora", write=is_main())

    # Evaluate after RL
    after, (video, tracks) = held_out()
    if not is_main():
        return {"before": before, "after": after}
    save_video_grid(out / "videos_after.gif", draw(video, tracks, heldout, cfg.run.video_clips))
    table = results_table({"before RL": before, "after RL": after}, change=True)
    warning = quality_warning(before, after, cfg.run.max_quality_drop)
    table += f"\n\n{warning}" if warning else ""
    save_json(out / "eval.json", {"before": before, "after": after, "iterations": trainer.iteration}, sort_keys=False)
    (out / "eval.md").write_text(table + "\n")
    print(f"held-out evaluation ({cfg.run.eval_clips} controls x {cfg.run.eval_draws} noises, ODE sampling):\n{table}")
    return {"before": before, "after": after}


@hydra.main(version_base=None, config_name="ar_drag_grpo")
def _entry(cfg: ARDragGRPOConfig) -> None:
    with failing_clearly(cfg.dist.timeout_s):
        main(cfg)


if __name__ == "__main__":
    launch(_entry)
