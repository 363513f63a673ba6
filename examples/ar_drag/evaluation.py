"""Held-out evaluation of the AR-Drag jobs: sample videos, track them, one table.

Figures (normalized units: 1 = the image side; over target-visible points and frames t >= 1):

- ``trajectory_error``: tracked-vs-target distance, a point the tracker lost counted as at least 0.25;
- ``lost_fraction``: share of the points the tracker lost;
- ``position_error``: distance of the positions the tracker reports, lost or not
  (Lucas-Kanade leaves a lost point where it last found it; a frozen video scores
  0 lost and the targets' mean distance from their start here);
- ``sprite_offset`` (Sprites-Drag): where a template search over the whole frame finds each sprite;
- ``reward`` (mean return per video) and each reward term (mean per frame), when the
  sampler reports them (env rollouts);
- ``objmc_px`` (motion consistency, DragAnything's ObjMC): ``position_error`` in pixels of
  the decoded frames.

The paper's other columns (FID, FVD, aesthetic, motion smoothness, latency) come from
:class:`VideoMetrics` fed through ``evaluate(..., on_video=...)`` and :func:`latency_row`
(``examples/evaluate.py`` runs them all).

The tracker queries are the trajectory reward's (:func:`rewards.trajectory.hinge_queries`):
tracks hidden at frame 0 are not counted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rewards.trajectory import hinge_queries
from rldiff.flow import ode_step, shifted_sigmas
from rldiff.metrics import feature_statistics, frechet_distance, motion_smoothness
from rldiff.types import Control

__all__ = [
    "evaluate", "env_sampler", "causal_sampler", "bidirectional_sampler", "tracking_stats", "sprite_offset", "objmc_px", "results_table",
    "quality_warning", "VideoMetrics", "causal_stream", "bidirectional_stream", "latency_row",
]  # fmt: skip

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


def objmc_px(tracks: Tensor, control: Control, height: int, width: int) -> float:
    """ObjMC: mean Euclidean distance in pixels between tracked ``[B, T, K, 2]`` and target points (queried tracks, target-visible, t >= 1)."""
    _, counts = hinge_queries(control.trajectory, control.visibility)
    target = control.visibility[:, 1:] & counts.unsqueeze(1)  # [B, T-1, K]
    if not bool(target.any()):
        return float("nan")
    scale = torch.tensor([width, height], dtype=tracks.dtype)
    return float(((tracks - control.trajectory) * scale).norm(dim=-1)[:, 1:][target].mean())


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
def evaluate(
    sample, codec, control: Control, tracker, *, draws: int = 1, chunk: int | None = None, seed: int = 0, sprites: bool = False, on_video=None
) -> tuple[dict, tuple[Tensor, Tensor]]:
    """Sample every control ``draws`` times (in chunks of ``chunk`` rows) and score all ``B * draws`` videos together.

    ``sample(control, generator) -> {"clean": [b, F, C, H, W], "reward"?: [b, F], "reward_terms"?: {name: [b, F]}}``
    (see the samplers above). ``sprites``: add the tracker-free ``sprite_offset`` (Sprites-Drag worlds).
    ``on_video(video [b, T, 3, H, W], part)`` is called with every decoded chunk (e.g. :meth:`VideoMetrics.add`).
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
            if on_video is not None:
                on_video(video, part)
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
    row["objmc_px"] = objmc_px(torch.cat(tracks), every, *first[0].shape[-2:])
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


# ----------------------------------------------------------------------------- the paper's columns
class VideoMetrics:
    """Accumulates what the paper's table needs from generated videos, chunk by chunk (``add`` is an ``on_video``).

    ``frame_features(frames [N, 3, H, W]) -> [N, D]`` (FID), ``clip_features(clips [N, T, 3, H, W]) -> [N, D]``
    (FVD), ``interpolate(before, after) -> middle`` (motion smoothness), ``aesthetic(video) -> [B]``:
    each optional (None: the column is left out). ``row(reference)`` gives ``fid``, ``fvd``,
    ``motion_smoothness``, ``aesthetic`` against reference statistics ``{"fid": (mu, sigma), "fvd": ...}``.
    """

    def __init__(self, frame_features=None, clip_features=None, interpolate=None, aesthetic=None):
        self.frame_features, self.clip_features, self.interpolate, self.aesthetic = frame_features, clip_features, interpolate, aesthetic
        self.parts: dict[str, list[Tensor]] = {"fid": [], "fvd": [], "motion_smoothness": [], "aesthetic": []}

    def add(self, video: Tensor, control: Control | None = None) -> None:
        """Features and scores of ``video [b, T, 3, H, W]`` in [0, 1]."""
        if self.frame_features is not None:
            self.parts["fid"].append(self.frame_features(video.flatten(0, 1)).cpu())  # [b*T, D]
        if self.clip_features is not None:
            self.parts["fvd"].append(self.clip_features(video).cpu())  # [b, D]
        if self.interpolate is not None:
            self.parts["motion_smoothness"].append(motion_smoothness(video, self.interpolate).cpu())  # [b]
        if self.aesthetic is not None:
            self.parts["aesthetic"].append(self.aesthetic(video).cpu())  # [b]

    def statistics(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Mean and covariance of the frame (``fid``) and clip (``fvd``) features gathered so far."""
        return {k: feature_statistics(torch.cat(self.parts[k])) for k in ("fid", "fvd") if self.parts[k]}

    def row(self, reference: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
        out = {}
        for key, (mu, sigma) in self.statistics().items():
            if key in reference:
                out[key] = frechet_distance(mu, sigma, *reference[key])
        for key in ("motion_smoothness", "aesthetic"):
            if self.parts[key]:
                out[key] = float(torch.cat(self.parts[key]).mean())
        return out


def causal_stream(model, encoder, codec, control: Control, num_frames: int, num_steps: int, shift: float, seed: int = 0):
    """``stream()`` for :func:`rldiff.metrics.measure_latency`: a causal model's frames as :func:`policies.generate` yields them."""
    from policies import generate

    return lambda: generate(model, encoder, codec, control, num_frames, num_steps, shift, generator=torch.Generator().manual_seed(seed))


def bidirectional_stream(sample, codec, control: Control, seed: int = 0):
    """``stream()`` for a model that makes the whole clip at once: one item, the decoded clip (its first frame comes with the last)."""

    def stream():
        yield codec.decode(sample(control, torch.Generator().manual_seed(seed))["clean"])  # [b, T, 3, H, W]

    return stream


def latency_row(latency, num_frames: int) -> dict[str, float]:
    """``latency_first_frame_s`` and ``fps`` (steady state after the first frame; whole-clip models: frames / total time)."""
    fps = latency.fps if latency.fps == latency.fps else num_frames / latency.total_s
    return {"latency_first_frame_s": latency.first_frame_s, "fps": fps}


# ----------------------------------------------------------------------------- aesthetic columns
class LaionAesthetic:
    """``video [B, T, 3, H, W] -> [B]``: the LAION improved aesthetic predictor (``rewards.AestheticReward``, about 1-10), mean over frames."""

    name = "aesthetic (LAION improved predictor, 1-10)"

    def __init__(self, clip_path: str, head_path: str, device: str = "cpu"):
        from rewards import AestheticReward

        self.reward = AestheticReward(clip_path, head_path, device=device)

    def __call__(self, video: Tensor) -> Tensor:
        return self.reward.score(video, None).mean(1)  # [B]


class VBenchAesthetic:
    """``video -> [B]``: VBench's aesthetic quality, LAION's linear head ``sa_0_4_vit_l_14_linear`` (keys weight [1, d], bias [1])
    on the L2-normalized CLIP ViT-L/14 image embedding, divided by 10 (0-1). CLIP and the head load on first call."""

    name = "aesthetic (VBench: LAION linear head / 10, 0-1)"

    def __init__(self, clip_path: str, head_path: str, device: str = "cpu", batch_size: int = 32):
        self.clip_path, self.head_path, self.device, self.batch_size = clip_path, head_path, torch.device(device), batch_size
        self._clip = None

    def _load(self) -> None:
        from pathlib import Path

        from transformers import CLIPVisionModelWithProjection

        from rewards.aesthetic import load_head_state

        state = load_head_state(Path(self.head_path))
        if set(state) != {"weight", "bias"} or state["weight"].dim() != 2 or state["weight"].shape[0] != 1:
            raise ValueError(f"VBenchAesthetic: head_path {self.head_path!r} must hold one linear layer (weight [1, d], bias [1]), got keys {sorted(state)[:6]}")
        if not (Path(self.clip_path) / "config.json").is_file():
            raise FileNotFoundError(f"VBenchAesthetic: clip_path {self.clip_path!r} is not a local CLIP directory with config.json")
        self.weight, self.bias = state["weight"].float(), state["bias"].float()
        self._clip = CLIPVisionModelWithProjection.from_pretrained(self.clip_path).to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, video: Tensor) -> Tensor:
        from rewards.aesthetic import clip_preprocess

        if self._clip is None:
            self._load()
        b, t = video.shape[:2]
        embs = []
        for chunk in video.flatten(0, 1).split(self.batch_size):
            emb = self._clip(pixel_values=clip_preprocess(chunk.to(self.device), int(self._clip.config.image_size))).image_embeds.float().cpu()
            embs.append(emb / emb.norm(dim=-1, keepdim=True))  # [n, d]
        scores = (torch.cat(embs) @ self.weight.T + self.bias).squeeze(-1) / 10  # [B*T]
        return scores.view(b, t).mean(1)  # [B]
