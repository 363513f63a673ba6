"""Does the trajectory reward rank videos the way the held-out metric should? Side by side on held-out Sprites-Drag.

Scores, on the same held-out controls and noise: the ground-truth videos, a
frozen video (the reference repeated: the reward hack GRPO found with the old
settings), the bundled teacher and student, the ground-truth sprites pasted onto
the student's frames (within 0.2 of each sprite: is it the sprites or the
background the tracker fails on?), and optionally GRPO checkpoints.
Columns: the held-out ``trajectory_error`` (lost points count 0.25), the share
of lost points, ``position_error`` (where the tracker left each point, lost or
not), the Sprites quality (``SpritesQualityReward``, 1 for ground truth), and the per-point hinge ``mean_k max(0, alpha - e_k) / alpha`` over
frames t >= 1 for the two lost-track rules and several alphas (1 = perfect).
A reward that ranks ``frozen`` above ``student`` pulls GRPO towards freezing.
A second table splits the error by frame: where Lucas-Kanade reports each point
against where a template search over the whole frame finds its sprite
(``SpritesQualityReward.locate``). A tracker error that grows frame by frame
while the template distance stays flat is tracker drift, not misplaced sprites.

    python benchmarks/reward_ranking.py
    python benchmarks/reward_ranking.py --clips 32 --checkpoint outputs/<date>/<time>     # a run dir: its newest checkpoint
    python benchmarks/reward_ranking.py --clips 64 --draws 3 --checkpoint a/checkpoints/ckpt-00000150 --checkpoint b   # compare runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from examples.ar_drag.components import BUNDLE
from examples.ar_drag.evaluation import bidirectional_sampler, causal_sampler, stats_of_tracks
from examples.ar_drag.stages import build_world
from policies.causal_wan import CausalWan
from policies.teacher import BidirectionalWan
from rewards.sprites import SpritesQualityReward
from rewards.trackers import LucasKanadeTracker
from rewards.trajectory import hinge_queries, trajectory_hinge
from rldiff.run_state import load_policy_weights

ALPHAS = (0.05, 0.01, 0.0025)


def load_grpo_student(checkpoint: Path) -> CausalWan:
    """The bundled student with a GRPO run's policy weights (a run, checkpoints or ckpt-* directory)."""
    model = CausalWan.from_pretrained(BUNDLE / "student")
    model.load_state_dict(load_policy_weights(checkpoint))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32, help="held-out controls")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], help="GRPO checkpoint dir (repeatable)")
    parser.add_argument("--draws", type=int, default=1, help="initial noises per control (the rows pool clips x draws videos)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = OmegaConf.create(json.loads((BUNDLE / "world.json").read_text()))
    world = build_world(cfg)
    videos, control = world.heldout.heldout_videos()
    order = list(range(args.clips)) * args.draws  # every control once per noise draw
    videos, control = videos[order], control.index(order)

    def causal(model):  # every causal model from the same conditioning and initial noise
        sample = causal_sampler(model, world.encoder, world.codec, cfg.num_frames, cfg.num_steps, cfg.shift)
        return world.codec.decode(sample(control, torch.Generator().manual_seed(8))["clean"]).clamp(0, 1)

    quality = SpritesQualityReward()
    quality.reset(control)  # its templates locate the sprites (SpritesQualityReward.locate)
    with torch.no_grad():
        rows = {
            "ground truth": videos,
            "frozen (reference repeated)": control.reference[:, None].expand_as(videos).contiguous(),
            "teacher (20 steps)": world.codec.decode(
                bidirectional_sampler(BidirectionalWan.from_pretrained(BUNDLE / "teacher").eval(), world.encoder, (world.codec.latent_channels, *world.latent_size), cfg.num_frames, 20, cfg.shift)(
                    control, torch.Generator().manual_seed(8)
                )["clean"]
            ).clamp(0, 1),
            "student (bundled)": causal(CausalWan.from_pretrained(BUNDLE / "student").eval()),
        }
        # which part of the student's frames the tracker fails on: the true sprites pasted onto its background
        near = near_sprites(quality.locate(videos), videos.shape[-2:], radius=0.2)  # [B, T, 1, H, W]
        rows["ground-truth sprites on the student's background"] = near * videos + (1 - near) * rows["student (bundled)"]
        for ckpt in args.checkpoint:
            rows[f"GRPO {ckpt}"] = causal(load_grpo_student(ckpt))

    tracker = LucasKanadeTracker()
    drift = {}
    # one LK pass per video serves both: the hinge counts only points visible at frame 0 (its queries, the same ones)
    queries, _ = hinge_queries(control.trajectory, control.visibility)
    hinge_target = control.visibility & control.visibility[:, :1]  # [B, T, K]
    scored = hinge_target[:, 1:].any(-1)  # [B, T-1] frames with a counted point
    head = " | ".join(f"{rule} a={a}" for rule in ("miss", "stale") for a in ALPHAS)
    print(f"| video | trajectory error | lost | position error | quality | {head} |")
    print("|---|---|---|---|---|" + "---|" * (2 * len(ALPHAS)))
    for name, video in rows.items():
        tracks, vis = tracker.track(video, queries)
        stats = stats_of_tracks(tracks, vis, control)
        cells = []
        for rule in ("miss", "stale"):
            for a in ALPHAS:
                r = trajectory_hinge(tracks, vis, control.trajectory, hinge_target, 1.0 / a, a, per_point=True, lost=rule)
                cells.append(f"{float(r[:, 1:][scored].mean()):.3f}")
        q = float(quality.score_components(video, control)["reward"].mean())  # the Sprites quality, 1 for ground truth
        print(f"| {name} | {stats['trajectory_error']:.4f} | {stats['lost_fraction']:.3f} | {stats['position_error']:.4f} | {q:.4f} | " + " | ".join(cells) + " |")
        drift[name] = (per_frame(tracks, control), per_frame(quality.locate(video), control))

    # per frame: where Lucas-Kanade reports each point vs where template search finds its sprite
    frames = range(1, videos.shape[1])
    print(f"\n| video | located by | {' | '.join(f't={t}' for t in frames)} |")
    print("|---|---|" + "---|" * len(frames))
    for name, (lk, found) in drift.items():
        for how, err in (("Lucas-Kanade", lk), ("template search", found)):
            print(f"| {name} | {how} | " + " | ".join(f"{float(err[t]):.3f}" for t in frames) + " |")


def near_sprites(positions: torch.Tensor, size, radius: float) -> torch.Tensor:
    """``[B, T, 1, H, W]`` 1 within ``radius`` (normalized) of any of ``positions [B, T, K, 2]``, else 0."""
    h, w = size
    ys, xs = (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w
    dx = xs.view(1, 1, 1, 1, w) - positions[..., 0, None, None]  # [B, T, K, 1, W]
    dy = ys.view(1, 1, 1, h, 1) - positions[..., 1, None, None]  # [B, T, K, H, 1]
    return ((dx**2 + dy**2).sqrt() < radius).any(dim=2, keepdim=True).float()


def per_frame(positions: torch.Tensor, control) -> torch.Tensor:
    """Mean distance of ``positions [B, T, K, 2]`` to the targets over target-visible points, per frame ``[T]``."""
    dist = (positions - control.trajectory).norm(dim=-1)  # [B, T, K]
    shown = control.visibility.float()
    return (dist * shown).sum(dim=(0, 2)) / shown.sum(dim=(0, 2)).clamp_min(1.0)


if __name__ == "__main__":
    main()
