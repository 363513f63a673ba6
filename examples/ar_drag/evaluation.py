"""Held-out evaluation of the AR-Drag jobs: sample videos, track them, one table.

Figures (normalized units: 1 = the image side; over target-visible points and frames t >= 1):

- ``trajectory_error``: tracked-vs-target distance, a point the tracker lost counted as at least 0.25;
- ``lost_fraction``: share of the points the tracker lost;
- ``position_error``: distance of the positions the tracker reports, lost or not
  (Lucas-Kanade leaves a lost point where it last found it; a frozen video scores
  0 lost and the targets' mean distance from their start here);
- ``sprite_offset`` (Sprites-Drag): where a template search over the whole frame finds each sprite;
- ``reward`` (mean return per video) and each reward term (mean per frame), when the
  sampler reports them (env rollouts).

The tracker queries are the trajectory reward's (:func:`rewards.trajectory.hinge_queries`):
tracks hidden at frame 0 are not counted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rewards.trajectory import hinge_queries
from rldiff.flow import ode_step, shifted_sigmas
from rldiff.types import Control

__all__ = ["evaluate", "env_sampler", "causal_sampler", "bidirectional_sampler", "tracking_stats", "sprite_offset", "results_table", "quality_warning"]

LOST_DISTANCE = 0.25  # a lost point counts as at least this far (a quarter of the image) from its target


# ----------------------------------------------------------------------------- samplers: (control, generator) -> {"clean": [b, F, C, H, W], ...}
def env_sampler(trainer):
    """ODE rollouts through the GRPO trainer's runner (the env path it trains on; works sharded): clean latents, rewards."""
    mask = torch.zeros(trainer.collector.num_frames, trainer.collector.num_steps, dtype=torch.bool)  # [F, N] all ODE

    def sample(control: Control, generator: torch.Generator):
        return trainer.rollout(control, 1, mask, generator)

    return sample


def causal_sampler(model, encoder, codec, num_frames: int, num_steps: int, shift: float):
    """ODE generation of a causal model through its KV cache (:func:`policies.generate`)."""
    from policies import generate

    def sample(control: Control, generator: torch.Generator):
        frames = generate(model, encoder, codec, control, num_frames, num_steps, shift, generator=generator)
        return {"clean": torch.stack([f.latent for f in frames], dim=1)}  # [b, F, C, H, W]

    return sample


def bidirectional_sampler(teacher, encoder, latent_shape: tuple[int, int, int], num_frames: int, num_steps: int, shift: float):
    """Many-step ODE generation of the whole clip at once by a bidirectional teacher."""
    sigmas = shifted_sigmas(num_steps, shift)  # [N+1]

    @torch.no_grad()
    def sample(control: Control, generator: torch.Generator):
        cond = encoder.encode(control, num_frames, generator=generator)
        x = torch.randn(control.batch_size, num_frames, *latent_shape, generator=generator)  # [b, F, C, H, W]
        for n in range(num_steps):
            x = ode_step(x, teacher(x, sigmas[n].expand(x.shape[0]), cond), float(sigmas[n]), float(sigmas[n + 1]))
        return {"clean": x}

    return sample


# ----------------------------------------------------------------------------- figures
def stats_of_tracks(tracks: Tensor, vis: Tensor, control: Control) -> dict[str, float]:
    """``trajectory_error``, ``lost_fraction``, ``position_error`` of tracks ``[B, T, K, 2]`` / visibility ``[B, T, K]``."""
    _, counts = hinge_queries(control.trajectory, control.visibility)  # [B, K] tracks queried at frame 0
    target = control.visibility[:, 1:] & counts.unsqueeze(1)  # [B, T-1, K]
    if not bool(target.any()):
        return {"trajectory_error": float("nan"), "lost_fraction": float("nan"), "position_error": float("nan")}
    dist = (tracks - control.trajectory).norm(dim=-1)[:, 1:]  # [B, T-1, K]
    lost = target & ~vis[:, 1:]
    return {
        "trajectory_error": float(torch.where(lost, dist.clamp(min=LOST_DISTANCE), dist)[target].mean()),
        "lost_fraction": float(lost[target].float().mean()),
        "position_error": float(dist[target].mean()),
    }


def tracking_stats(video: Tensor, control: Control, tracker) -> tuple[dict[str, float], Tensor]:
    """The figures of one batch of videos ``[B, T, 3, H, W]``, and the tracks."""
    queries, _ = hinge_queries(control.trajectory, control.visibility)
    tracks, vis = tracker.track(video.clamp(0, 1), queries)
    return stats_of_tracks(tracks, vis, control), tracks


def mean_offset(positions: Tensor, control: Control) -> float:
    """Mean distance of ``positions [B, T, K, 2]`` to the targets over target-visible points, frames t >= 1."""
    target = control.visibility[:, 1:]  # [B, T-1, K]
    if not bool(target.any()):
        return float("nan")
    return float((positions - control.trajectory).norm(dim=-1)[:, 1:][target].mean())


def sprite_offset(video: Tensor, control: Control) -> float:
    """Mean distance from each target point to where its sprite's reference template matches best (Sprites-Drag).

    Like ``trajectory_error`` over target-visible points and frames t >= 1, but located by
    template search over the whole frame (``SpritesQualityReward.locate``) instead of a chained
    tracker: where the sprites are drawn even when Lucas-Kanade drifts or loses them.
    Ground truth scores about 0.015 (resampling and the sprites' own rotation).
    """
    from rewards.sprites import SpritesQualityReward

    quality = SpritesQualityReward()
    quality.reset(control)
    return mean_offset(quality.locate(video.clamp(0, 1)), control)


@torch.no_grad()
def evaluate(sample, codec, control: Control, tracker, *, draws: int = 1, chunk: int | None = None, seed: int = 0, sprites: bool = False) -> tuple[dict, tuple[Tensor, Tensor]]:
    """Sample every control ``draws`` times (in chunks of ``chunk`` rows) and score all ``B * draws`` videos together.

    ``sample(control, generator) -> {"clean": [b, F, C, H, W], "reward"?: [b, F], "reward_terms"?: {name: [b, F]}}``
    (see the samplers above). ``sprites``: add the tracker-free ``sprite_offset`` (Sprites-Drag worlds).
    Returns the row and ``(video, tracks)`` of the first draw of every control (for drawing).
    """
    if draws < 1 or control.batch_size < 1:
        raise ValueError(f"evaluate: needs at least one control and one draw, got {control.batch_size} controls and draws={draws}")
    from rewards.sprites import SpritesQualityReward

    quality = SpritesQualityReward() if sprites else None
    generator = torch.Generator().manual_seed(seed)
    chunk = chunk or control.batch_size
    tracks, vis, located, sums, first = [], [], [], {}, []
    for draw in range(draws):
        for start in range(0, control.batch_size, chunk):
            part = control.index(list(range(start, min(start + chunk, control.batch_size))))
            out = sample(part, generator)
            video = codec.decode(out["clean"]).clamp(0, 1)  # [b, T, 3, H, W]
            queries, _ = hinge_queries(part.trajectory, part.visibility)
            part_tracks, part_vis = tracker.track(video, queries)
            tracks.append(part_tracks.cpu())
            vis.append(part_vis.cpu())
            if quality is not None:
                quality.reset(part)
                located.append(quality.locate(video).cpu())
            if "reward" in out.keys():
                sums.setdefault("reward", []).append(out["reward"].sum(1).cpu())  # [b] the return of each video
            for name, value in (out["reward_terms"].items() if "reward_terms" in out.keys() else ()):
                sums.setdefault(name, []).append(value.cpu())  # [b, F] a term's mean is per frame
            if draw == 0:
                first.append(video.cpu())
    every = control.index(list(range(control.batch_size)) * draws)  # the controls in sampling order
    row = stats_of_tracks(torch.cat(tracks), torch.cat(vis), every)
    if quality is not None:
        row["sprite_offset"] = mean_offset(torch.cat(located), every)
    row.update({name: float(torch.cat(values).mean()) for name, values in sums.items()})
    return row, (torch.cat(first), torch.cat(tracks[: len(first)]))


# ----------------------------------------------------------------------------- reporting
def results_table(columns: dict[str, dict[str, float]], change: bool = False) -> str:
    """Markdown table: one row per metric the columns share, one column per model (or run phase).

    ``change``: a last column with the relative change from the first column to the last.
    """
    names = list(columns)
    keys = [k for k in columns[names[0]] if all(k in columns[n] for n in names) and isinstance(columns[names[0]][k], (int, float))]
    head = ["metric", *names] + (["change"] if change else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        cells = [f"{columns[n][k]:.4f}" for n in names]
        if change:
            a, b = columns[names[0]][k], columns[names[-1]][k]
            cells.append(f"{(b - a) / abs(a) * 100:+.1f}%" if a else "n/a")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


QUALITY_KEYS = ("quality/value", "quality", "aesthetic")  # the first present, positive one is the quality figure


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
