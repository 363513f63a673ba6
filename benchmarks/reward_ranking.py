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
    python benchmarks/reward_ranking.py --clips 32 --checkpoint runs/x/checkpoints/ckpt-00000150
    python benchmarks/reward_ranking.py --clips 64 --draws 3 --checkpoint a/... --checkpoint b/...   # compare runs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from distill_stages import build_world  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from sprites_eval import eval_queries, generate_bidirectional, generate_causal, stats_of_tracks  # noqa: E402

from policies.causal_wan import CausalWan  # noqa: E402
from policies.teacher import BidirectionalWan  # noqa: E402
from rewards.sprites import SpritesQualityReward  # noqa: E402
from rewards.trackers import LucasKanadeTracker  # noqa: E402
from rewards.trajectory import trajectory_hinge  # noqa: E402
from rldiff.flow import shifted_sigmas  # noqa: E402

BUNDLE = ROOT / "examples" / "pretrained" / "sprites_drag"
ALPHAS = (0.05, 0.01, 0.0025)


def load_grpo_student(checkpoint: Path) -> CausalWan:
    """The bundled student with a GRPO checkpoint's policy weights (``policy.safetensors``, keys ``model.*``)."""
    model = CausalWan.from_pretrained(BUNDLE / "student")
    state = {k.removeprefix("model."): v for k, v in load_file(checkpoint / "policy.safetensors").items()}
    model.load_state_dict(state)
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
    cond = world.encoder.encode(control, cfg.num_frames, torch.Generator().manual_seed(7))
    noise = torch.randn(len(order), cfg.num_frames, world.codec.latent_channels, *world.latent_size, generator=torch.Generator().manual_seed(8))
    sigmas = shifted_sigmas(cfg.num_steps, cfg.shift)

    def decode(latents):
        return world.codec.decode(latents).clamp(0, 1)

    quality = SpritesQualityReward()
    quality.reset(control)  # its templates locate the sprites (SpritesQualityReward.locate)
    with torch.no_grad():
        rows = {
            "ground truth": videos,
            "frozen (reference repeated)": control.reference[:, None].expand_as(videos).contiguous(),
            "teacher (20 steps)": decode(generate_bidirectional(BidirectionalWan.from_pretrained(BUNDLE / "teacher").eval(), cond, noise, 20, cfg.shift)[0]),
            "student (bundled)": decode(generate_causal(CausalWan.from_pretrained(BUNDLE / "student").eval(), cond, noise, sigmas)[0]),
        }
        # which part of the student's frames the tracker fails on: the true sprites pasted onto its background
        near = near_sprites(quality.locate(videos), videos.shape[-2:], radius=0.2)  # [B, T, 1, H, W]
        rows["ground-truth sprites on the student's background"] = near * videos + (1 - near) * rows["student (bundled)"]
        for ckpt in args.checkpoint:
            rows[f"GRPO {ckpt.parent.parent.name}/{ckpt.name}"] = decode(generate_causal(load_grpo_student(ckpt), cond, noise, sigmas)[0])

    tracker = LucasKanadeTracker()
    drift = {}
    # one LK pass per video serves both: the hinge counts only points visible at frame 0 (its queries, the same ones)
    queries = eval_queries(control)
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
