"""AR-Drag Step 2: GRPO with selective stochasticity on the causal student, through the AR denoising env.

Default: the bundled Sprites-Drag student on CPU, reward = per-track trajectory
hinge (Lucas-Kanade tracks, a lost track scored where it was last found; frame
t scored by the hinge's change since frame t-1) + 0.7 log Sprites quality, each
term normalized in its group before the weighted sum (grpo.advantage=per_term),
KL 0.01 to the start, lr 2e-4 annealed linearly to 0, coefficient-preserving
stochastic steps, OneStepPerFrame, the rollouts of a group from one initial
noise. Outputs in the run directory: metrics.csv, tensorboard/, plots.png,
videos before/after RL with target (white) and tracked (red) trajectories,
eval.md / eval.json (64 held-out controls x 3 noises, before vs after RL),
checkpoints/ (a killed run resumes; a finished one is not retrained).

Launch:
    python examples/ar_drag_grpo.py
    python examples/ar_drag_grpo.py -m schedule=one_step_per_frame,all_steps grpo.kl_coef=0,0.01
    python examples/ar_drag_grpo.py policy=wan policy.path=/models/wan-i2v-1.3b/transformer \
        policy.text_encoder_path=/models/wan-i2v-1.3b/text_encoder policy.tokenizer_path=/models/wan-i2v-1.3b/tokenizer \
        codec=wan_vae codec.local_dir=/models/wan-i2v-1.3b/vae reward=aesthetic reward.clip_path=... reward.head_path=...
    python examples/ar_drag_grpo.py -m hydra/launcher=submitit_slurm ...   # clusters (pip install hydra-submitit-launcher)
    torchrun --nproc_per_node=2 examples/ar_drag_grpo.py parallel=ddp   # several processes/GPUs (parallel=fsdp2 shards)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING, OmegaConf
from tqdm import tqdm

from common import MetricsLogger
from launch import DistConf, failing_clearly, is_main, launch, rank_seed, register_parallel
from envs import ARVideoDenoisingVectorEnv, EnvCollector
from grpo_parts import build_policy, build_reward, build_tracker, register_groups, term_weights
from rldiff import distributed as dist_utils
from rldiff.trainer import GRPOTrainer
from rewards.sprites import SpritesQualityReward
from sprites_eval import eval_queries, mean_offset, stats_of_tracks
from visualize import draw_tracks, plot_metrics, save_video_grid


@dataclass
class TrainerConf:
    """Run length, checkpoints, evaluation and outputs."""

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
    """AR-Drag GRPO job. Every field is a Hydra override."""

    defaults: list[Any] = field(
        default_factory=lambda: [
            {"policy": "sprites_student"},
            {"codec": "pixel"},
            {"controls": "sprites"},
            {"reward": "sprites"},
            {"schedule": "one_step_per_frame"},
            {"grpo": "default"},
            {"trainer": "default"},
            {"parallel": "none"},
            "_self_",
        ]
    )
    policy: Any = MISSING  # policy group
    codec: Any = MISSING  # codec group
    controls: Any = MISSING  # control source group
    reward: Any = MISSING  # reward group
    schedule: Any = MISSING  # stochasticity schedule group
    grpo: Any = MISSING  # GRPOTrainer settings
    trainer: Any = MISSING  # run settings
    parallel: Any = MISSING  # gradient sync across torchrun processes (config group: none, ddp, fsdp2)
    dist: DistConf = field(default_factory=DistConf)  # process group under torchrun (backend, timeout_s)


cs = ConfigStore.instance()
cs.store(name="ar_drag_grpo", node=ARDragGRPOConfig)
cs.store(group="trainer", name="default", node=TrainerConf)
register_groups(cs)
register_parallel(cs)


@torch.no_grad()
def evaluate(trainer, control, codec, tracker, seed: int, draws: int = 1, sprites: bool = False) -> tuple[dict, Any]:
    """Deterministic (ODE) rollouts on held-out controls: trajectory error, quality, reward (every rank, same numbers).

    Each control is rolled out from ``draws`` initial noises, in chunks of the
    env's rows; the figures are over all ``B * draws`` videos (one draw of 32
    clips leaves several percent of noise in a before/after change).
    ``sprites``: also the tracker-free ``sprite_offset`` (Sprites-Drag worlds).
    Returns the row and ``(video, tracks)`` of the first draw, every control (for drawing).
    """
    mask = torch.zeros(trainer.collector.num_frames, trainer.collector.num_steps, dtype=torch.bool)  # [F, N]
    generator = torch.Generator().manual_seed(seed)
    chunk = trainer.collector.env.num_envs
    quality = SpritesQualityReward() if sprites else None
    tracks, vis, located, rewards, terms, first = [], [], [], [], {}, []
    for draw in range(draws):
        for start in range(0, control.batch_size, chunk):
            part = control.index(slice(start, start + chunk))
            rollout = trainer.rollout(part, 1, mask, generator)
            video = codec.decode(rollout["clean"]).clamp(0, 1)  # [b, T, 3, H, W]
            part_tracks, part_vis = tracker.track(video, eval_queries(part))
            tracks.append(part_tracks.cpu())
            vis.append(part_vis.cpu())
            if quality is not None:
                quality.reset(part)
                located.append(quality.locate(video).cpu())
            rewards.append(rollout["reward"].sum(1).cpu())
            if "reward_terms" in rollout.keys():
                for name, value in rollout["reward_terms"].items():
                    terms.setdefault(name, []).append(value.cpu())
            if draw == 0:
                first.append(video.cpu())
    every = control.index(list(range(control.batch_size)) * draws)  # the controls in rollout order
    row = stats_of_tracks(torch.cat(tracks), torch.cat(vis), every)
    if quality is not None:
        row["sprite_offset"] = mean_offset(torch.cat(located), every)
    row["reward"] = float(torch.cat(rewards).mean())
    for name, values in terms.items():
        row[name] = float(torch.cat(values).mean())
    return row, (torch.cat(first), torch.cat(tracks[: len(first)]))


QUALITY_KEYS = ("quality/value", "quality", "aesthetic")  # first present, positive one is the quality figure


def quality_warning(before: dict, after: dict, max_drop: float) -> str | None:
    """A warning line when the held-out quality figure fell by more than ``max_drop`` (a sign of reward hacking)."""
    for key in QUALITY_KEYS:
        if key in before and key in after and before[key] > 0:
            drop = 1.0 - after[key] / before[key]
            if drop > max_drop:
                return (
                    f"WARNING: held-out {key} fell by {100 * drop:.0f}% ({before[key]:.4g} -> {after[key]:.4g}); "
                    "the policy may be exploiting the reward: look at videos_after.gif before trusting the trajectory figures"
                )
            return None
    return None


def draw(video, tracks, control, clips: int) -> list:
    return [draw_tracks(video[i], control.trajectory[i], control.visibility[i], tracks[i]) for i in range(clips)]


def main(cfg: ARDragGRPOConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir)
    torch.manual_seed(rank_seed(cfg.trainer.seed))

    # Build the world, the reward and the policy
    codec = instantiate(cfg.codec)
    controls = instantiate(cfg.controls)
    heldout = instantiate(cfg.controls, split="heldout")
    reward = build_reward(cfg.reward)
    policy = build_policy(cfg.policy, codec)
    env = ARVideoDenoisingVectorEnv(
        cfg.grpo.num_controls * cfg.grpo.group_size, control_source=controls, codec=codec, reward=reward,
        num_steps=cfg.policy.num_steps, shift=cfg.policy.shift,
    )  # fmt: skip
    grpo = OmegaConf.to_container(cfg.grpo)
    collector = EnvCollector(env, shared_noise=grpo.pop("shared_noise"))
    grpo["term_weights"] = term_weights(grpo.pop("advantage"), reward)
    grpo["anneal_iterations"] = cfg.trainer.iterations if grpo.pop("anneal_lr") else None
    tracker = build_tracker(cfg.reward)
    eval_control = heldout.heldout_controls().index(list(range(cfg.trainer.eval_clips)))
    sprites = cfg.reward.kind == "sprites"  # the world is Sprites-Drag: add the tracker-free sprite offset

    # The trainer (under torchrun: gradients synced by cfg.parallel, rank 0 checkpoints full tensors)
    trainer = GRPOTrainer(
        policy, collector, controls, instantiate(cfg.schedule), **grpo, parallel=instantiate(cfg.parallel),
        seed=cfg.trainer.seed, checkpoint_dir=out / "checkpoints", checkpoint_every=cfg.trainer.checkpoint_every,
    )  # fmt: skip

    # Evaluate before RL (once per run directory; every rank evaluates, rank 0 writes)
    before_path = out / "eval_before.json"
    if not dist_utils.any_flag(not before_path.exists()):  # every rank decides alike (rank 0 writes it below)
        before = json.loads(before_path.read_text())
    else:
        before, (video, tracks) = evaluate(trainer, eval_control, codec, tracker, cfg.trainer.seed + 1, cfg.trainer.eval_draws, sprites)
        if is_main():
            before_path.write_text(json.dumps(before, indent=2))
            save_video_grid(out / "videos_before.gif", draw(video, tracks, eval_control, cfg.trainer.video_clips))

    # Collect and update
    if trainer.resume() and is_main():
        print(f"resumed from iteration {trainer.iteration}")
    logger = MetricsLogger(out, tensorboard=cfg.trainer.tensorboard, start_iteration=trainer.iteration) if is_main() else None
    plot_keys = ["reward_mean", "reward/trajectory", "reward/trajectory/value", "reward/trajectory/lost", "reward/consistency", "reward/quality", "reward/aesthetic", "clip_fraction", "approx_kl", "loss_kl", "grad_norm", "lr"]
    bar = tqdm(total=cfg.trainer.iterations, initial=trainer.iteration, desc="AR-Drag GRPO", dynamic_ncols=True, disable=not is_main())
    while trainer.iteration < cfg.trainer.iterations:
        metrics = trainer.step()
        bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", clip=f"{metrics.get('clip_fraction', 0.0):.2f}")
        bar.update(1)
        if logger is None:
            continue
        logger.log(metrics)
        if trainer.iteration % cfg.trainer.plot_every == 0 or trainer.iteration == cfg.trainer.iterations:
            plot_metrics(out / "plots.png", logger.rows, plot_keys)
    bar.close()
    if trainer.iteration % trainer.checkpoint_every:
        trainer.save_checkpoint()
    if logger is not None:
        logger.close()
        plot_metrics(out / "plots.png", logger.rows, plot_keys)

    # Evaluate after RL
    after, (video, tracks) = evaluate(trainer, eval_control, codec, tracker, cfg.trainer.seed + 1, cfg.trainer.eval_draws, sprites)
    if not is_main():
        return {"before": before, "after": after}
    save_video_grid(out / "videos_after.gif", draw(video, tracks, eval_control, cfg.trainer.video_clips))
    keys = [k for k in before if k in after]
    lines = ["| metric | before RL | after RL | change |", "|---|---|---|---|"]
    for k in keys:
        change = (after[k] - before[k]) / abs(before[k]) * 100 if before[k] else float("nan")
        lines.append(f"| {k} | {before[k]:.4f} | {after[k]:.4f} | {change:+.1f}% |")
    table = "\n".join(lines)
    warning = quality_warning(before, after, cfg.trainer.max_quality_drop)
    if warning:
        table += "\n\n" + warning
    (out / "eval.json").write_text(json.dumps({"before": before, "after": after, "iterations": trainer.iteration}, indent=2))
    (out / "eval.md").write_text(table + "\n")
    print(f"held-out evaluation ({cfg.trainer.eval_clips} controls x {cfg.trainer.eval_draws} noises, ODE sampling):\n{table}")
    return {"before": before, "after": after}


@hydra.main(version_base=None, config_name="ar_drag_grpo")
def _entry(cfg: ARDragGRPOConfig) -> None:
    with failing_clearly(cfg.dist.timeout_s):
        main(cfg)


if __name__ == "__main__":
    launch(_entry)
