"""Evaluation math: Frechet distance of feature sets (FID, FVD), VBench motion smoothness, latency timing, intervals.

Pure functions of explicit tensors; feature networks, interpolators and the
models being timed are passed in (loaded elsewhere: ``rewards.feature_nets``).

- ``feature_statistics(features [N, D]) -> (mu [D], sigma [D, D])`` in float64;
- ``frechet_distance(mu1, sigma1, mu2, sigma2)``:
  ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, the
  trace of the square root from the eigenvalues of the symmetric
  ``sigma1^(1/2) sigma2 sigma1^(1/2)`` (same eigenvalues, no complex round-off);
- ``save_statistics`` / ``load_statistics``: reference statistics cached as ``.npz``;
- ``motion_smoothness(video, interpolate)``: VBench's score, ``1 - mean |interp - real|``
  over the odd frames rebuilt from their even neighbours (VBench writes it
  ``(255 - mean abs diff) / 255`` on uint8 frames);
- ``measure_latency(stream, ...)``: first-frame latency and steady-state frames per
  second, after warm-up, median of several runs, with an injectable clock and sync;
- ``mean_interval(values)``: mean and half-width of the 95% Student-t interval.
- ``difference_interval(a, b)``: mean(a) - mean(b) and the half-width of its 95% Welch interval (independent runs).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_of",
    "save_statistics",
    "load_statistics",
    "blend_interpolate",
    "motion_smoothness",
    "Latency",
    "measure_latency",
    "mean_interval",
    "difference_interval",
]


# ----------------------------------------------------------------------------- Frechet distance
def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, as numpy's ``cov``) of ``features [N, D]``, in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics: features must be [N, D] with N >= 2, got shape {tuple(features.shape)}")
    x = features.detach().double()  # [N, D]
    if not bool(torch.isfinite(x).all()):
        raise ValueError("feature_statistics: features hold non-finite values")
    mu = x.mean(0)  # [D]
    centered = x - mu
    sigma = centered.T @ centered / (x.shape[0] - 1)  # [D, D]
    return mu, sigma


def _sym_sqrt(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues clamped to 0)."""
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2): the FID / FVD formula."""
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t).double() for t in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0]
    for name, mu, sigma in (("1", mu1, sigma1), ("2", mu2, sigma2)):
        if mu.shape != (d,) or sigma.shape != (d, d):
            raise ValueError(f"frechet_distance: expected mu{name} [{d}] and sigma{name} [{d}, {d}], got {tuple(mu.shape)} and {tuple(sigma.shape)}")
    root1 = _sym_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1  # [D, D] symmetric PSD, eigenvalues those of sigma1 sigma2
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt
    return max(float(value), 0.0)  # exact 0 can come out as -1e-12


def frechet_distance_of(features1: Tensor, features2: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets ``[N1, D]``, ``[N2, D]``."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def save_statistics(path: str | os.PathLike, mu: Tensor, sigma: Tensor, count: int, source: str) -> Path:
    """Cache reference statistics as ``.npz`` (``mu``, ``sigma``, ``count``, ``source``: what they were computed from)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, mu=mu.double().numpy(), sigma=sigma.double().numpy(), count=np.int64(count), source=np.str_(source))
    os.replace(tmp, path)
    return path


def load_statistics(path: str | os.PathLike, source: str | None = None) -> tuple[Tensor, Tensor, int]:
    """``(mu, sigma, count)`` from a :func:`save_statistics` file; ``source`` given: it must match the cached one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma, count, cached = data["mu"], data["sigma"], int(data["count"]), str(data["source"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"load_statistics: {path} is not a statistics file with mu, sigma, count, source ({type(e).__name__}: {e})") from e
    if source is not None and cached != source:
        raise ValueError(f"load_statistics: {path} holds statistics of {cached!r}, expected {source!r} (delete it to recompute)")
    return torch.from_numpy(mu), torch.from_numpy(sigma), count


# ----------------------------------------------------------------------------- motion smoothness
def blend_interpolate(before: Tensor, after: Tensor) -> Tensor:
    """Weight-free interpolator: the average of the two neighbours (NOT comparable with VBench's AMT-S figures)."""
    return (before + after) / 2


def motion_smoothness(video: Tensor, interpolate: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """VBench motion smoothness of ``video [B, T, 3, H, W]`` in [0, 1] -> ``[B]`` in [0, 1].

    Every odd frame ``t`` with both neighbours is rebuilt as ``interpolate(frame[t-1], frame[t+1])``
    (``[B', 3, H, W]`` each) and compared with the generated one: ``1 - mean |rebuilt - real|``.
    Frames are quantized to 8 bits first, as VBench reads them.
    """
    if video.dim() != 5 or video.shape[1] < 3:
        raise ValueError(f"motion_smoothness: video must be [B, T, 3, H, W] with T >= 3, got {tuple(video.shape)}")
    v = (video.detach().float().clamp(0, 1) * 255).round() / 255  # [B, T, 3, H, W]
    odd = torch.arange(1, v.shape[1] - 1, 2)  # frames with two neighbours
    b, k = v.shape[0], len(odd)
    before, after = v[:, odd - 1].flatten(0, 1), v[:, odd + 1].flatten(0, 1)  # [B*k, 3, H, W]
    rebuilt = interpolate(before, after).float().clamp(0, 1)
    rebuilt = (rebuilt * 255).round() / 255
    if rebuilt.shape != before.shape:
        raise ValueError(f"motion_smoothness: interpolate returned {tuple(rebuilt.shape)}, expected {tuple(before.shape)}")
    diff = (rebuilt - v[:, odd].flatten(0, 1)).abs().reshape(b, k, -1).mean(dim=(1, 2))  # [B]
    return 1.0 - diff


# ----------------------------------------------------------------------------- latency
@dataclass
class Latency:
    """Median over runs: seconds to the first frame, steady-state frames per second after it, seconds per whole video."""

    first_frame_s: float
    fps: float
    total_s: float
    runs: int


def measure_latency(
    stream: Callable[[], Iterable],
    *,
    warmup: int = 1,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
) -> Latency:
    """Time ``stream()`` (an iterable yielding one frame, or block of frames, at a time).

    ``warmup`` untimed runs first, then ``repeats`` timed ones. In each run: first-frame
    latency = time from the call to the first item; fps = frames after the first over the
    time they took (``len(item)`` frames per item if items are sized lists/tensors with
    ``frames``, else 1); ``sync()`` runs before every clock read (``torch.cuda.synchronize``
    on GPU). Reports the median of each figure over the timed runs.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"measure_latency: needs warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        for _item in stream():
            pass
    firsts, rates, totals = [], [], []
    for _ in range(repeats):
        sync()
        start = clock()
        first, frames_after = None, 0
        for item in stream():
            sync()
            now = clock()
            if first is None:
                first = now
            else:
                frames_after += _frames_in(item)
        if first is None:
            raise ValueError("measure_latency: stream() yielded nothing")
        firsts.append(first - start)
        totals.append(now - start)
        rates.append(frames_after / (now - first) if frames_after and now > first else float("nan"))
    return Latency(statistics.median(firsts), statistics.median(rates), statistics.median(totals), repeats)


def _frames_in(item) -> int:
    frames = getattr(item, "frames", None)
    if isinstance(frames, Tensor) and frames.dim() == 5:  # [B, t, 3, H, W] (policies.generate's GeneratedFrame)
        return int(frames.shape[1])
    return 1


# ----------------------------------------------------------------------------- intervals
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def mean_interval(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of the 95% Student-t interval of the mean (half-width nan for one value)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_interval: no values")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, float("nan")
    return mean, _t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def difference_interval(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """``(mean(a) - mean(b), half-width)`` of the 95% Welch interval of the difference of two independent samples.

    For rows trained with different seeds (e.g. GRPO runs vs Self-Rollout runs): each sample's variance enters
    on its own, and the Welch-Satterthwaite degrees of freedom are rounded down (a slightly wider, conservative
    interval). An interval that excludes 0 says the difference is larger than the run-to-run noise. Both
    samples need at least two values.
    """
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if len(xs) < 2 or len(ys) < 2:
        raise ValueError(f"difference_interval: each sample needs >= 2 values, got {len(xs)} and {len(ys)}")
    va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    diff = statistics.fmean(xs) - statistics.fmean(ys)
    if va + vb == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va**2 / (len(xs) - 1) + vb**2 / (len(ys) - 1))
    return diff, _t975(max(1, math.floor(df))) * math.sqrt(va + vb)


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.960
