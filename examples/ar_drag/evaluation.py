"""Held-out evaluation in the Sprites-Drag world: trajectory error, quality, time per frame.

- trajectory error: the generated video is tracked (Lucas-Kanade) from the
  target's first points; mean L2 distance between tracked and target points
  over visible tracks and frames t >= 1, in normalized units (1 = image size);
- quality: ``rewards.sprites.SpritesQualityReward`` (fidelity of sprite and
  background to the reference, in [0, 1]), mean over frames;
- time per latent frame of generation (seconds, this machine).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from rldiff.flow import ode_step, shifted_sigmas
from rldiff.types import Control


@torch.no_grad()
def generate_causal(model, cond, noise: Tensor, sigmas: Tensor) -> tuple[Tensor, float]:
    """Few-step ODE generation through the KV cache; returns latents ``[B, F, C, H, W]`` and seconds per frame."""
    cache, frames = model.new_cache(cond), []
    start = time.perf_counter()
    for m in range(noise.shape[1]):
        x = noise[:, m]
        for n in range(len(sigmas) - 1):
            v = model.forward_frame(x, m, 1000.0 * float(sigmas[n]), cond, cache)
            x = ode_step(x, v, float(sigmas[n]), float(sigmas[n + 1]))
        model.commit(x, m, cond, cache)
        frames.append(x)
    return torch.stack(frames, 1), (time.perf_counter() - start) / noise.shape[1]


@torch.no_grad()
def generate_bidirectional(teacher, cond, noise: Tensor, num_steps: int = 20, shift: float = 3.0) -> tuple[Tensor, float]:
    """Many-step ODE generation of the whole clip at once; returns latents and seconds per frame."""
    sigmas = shifted_sigmas(num_steps, shift)
    x = noise
    start = time.perf_counter()
    for n in range(num_steps):
        x = ode_step(x, teacher(x, sigmas[n].expand(x.shape[0]), cond), float(sigmas[n]), float(sigmas[n + 1]))
    return x, (time.perf_counter() - start) / noise.shape[1]


def trajectory_error(video: Tensor, control: Control, tracker) -> tuple[float, Tensor]:
    """Mean tracked-vs-target distance (normalized) over visible points and frames t >= 1; also the tracks."""
    stats, tracks = tracking_stats(video, control, tracker)
    return stats["trajectory_error"], tracks


def tracking_stats(video: Tensor, control: Control, tracker) -> tuple[dict, Tensor]:
    """``trajectory_error`` plus what it is made of, and the tracks.

    - ``trajectory_error``: mean distance over target-visible points and frames
      t >= 1, a point the tracker lost counted as at least 0.25 (a quarter of
      the image) from its target;
    - ``lost_fraction``: share of those points the tracker lost;
    - ``position_error``: mean distance of the positions the tracker reports,
      lost or not (Lucas-Kanade leaves a lost point where it last found it).

    A frozen video scores ``lost_fraction`` 0 and ``position_error`` equal to
    the mean distance of the targets from their start: compare with that
    before calling a drop in ``trajectory_error`` better motion.
    """
    tracks, vis = tracker.track(video.clamp(0, 1), eval_queries(control))
    return stats_of_tracks(tracks, vis, control), tracks


def eval_queries(control: Control) -> Tensor:
    """Queries ``(0, trajectory[:, 0])`` ``[B, K, 3]`` of every target point."""
    return torch.cat([torch.zeros(*control.trajectory.shape[:1], control.trajectory.shape[2], 1), control.trajectory[:, 0]], dim=-1)


def stats_of_tracks(tracks: Tensor, vis: Tensor, control: Control) -> dict:
    """The :func:`tracking_stats` figures of tracks ``[B, T, K, 2]`` and visibility ``[B, T, K]`` from :func:`eval_queries`."""
    target = control.visibility[:, 1:]  # [B, T-1, K]
    dist = (tracks - control.trajectory).norm(dim=-1)[:, 1:]  # [B, T-1, K]
    if not bool(target.any()):
        nan = float("nan")
        return {"trajectory_error": nan, "lost_fraction": nan, "position_error": nan}
    lost = target & ~vis[:, 1:]
    counted = torch.where(lost, dist.clamp(min=0.25), dist)[target]
    return {
        "trajectory_error": float(counted.mean()),
        "lost_fraction": float(lost[target].float().mean()),
        "position_error": mean_offset(tracks, control),
    }


def mean_offset(positions: Tensor, control: Control) -> float:
    """Mean distance (normalized) of ``positions [B, T, K, 2]`` to the targets over target-visible points, frames t >= 1."""
    target = control.visibility[:, 1:]  # [B, T-1, K]
    if not bool(target.any()):
        return float("nan")
    return float((positions - control.trajectory).norm(dim=-1)[:, 1:][target].mean())


def sprite_offset(video: Tensor, control: Control, quality=None) -> float:
    """Mean distance (normalized) from each target point to where its sprite's reference template matches best.

    Over target-visible points and frames t >= 1, like ``trajectory_error``, but
    located by template search over the whole frame
    (``SpritesQualityReward.locate``) instead of a chained tracker: it shows
    where the sprites are drawn even when Lucas-Kanade drifts or loses them.
    Ground truth scores about 0.015 (resampling and the sprites' own rotation).
    """
    from rewards.sprites import SpritesQualityReward

    quality = quality if quality is not None else SpritesQualityReward()
    quality.reset(control)
    return mean_offset(quality.locate(video.clamp(0, 1)), control)


def evaluate(name: str, latents: Tensor, seconds_per_frame: float, control: Control, codec, tracker, quality) -> dict:
    """One row of the evaluation table for generated ``latents [B, F, C, H, W]``."""
    video = codec.decode(latents).clamp(0, 1)
    err, _ = trajectory_error(video, control, tracker)
    q = float(quality.score(video, control).mean())
    return {"model": name, "trajectory_error": err, "quality": q, "s_per_frame": seconds_per_frame}


def format_table(rows: list[dict]) -> str:
    """Markdown table of evaluation rows."""
    lines = ["| model | trajectory error (normalized) | quality | s / latent frame |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['trajectory_error']:.4f} | {r['quality']:.4f} | {r['s_per_frame']:.4f} |")
    return "\n".join(lines)
