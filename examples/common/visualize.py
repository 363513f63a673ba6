"""Drawing helpers for example outputs: videos with target and tracked trajectories, GIFs, metric plots."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import torch
from torch import Tensor

TARGET_COLOR = (255, 255, 255)
TRACKED_COLOR = (255, 60, 60)


def draw_tracks(video: Tensor, target: Tensor, visibility: Tensor, tracked: Tensor | None = None, scale: int = 4) -> np.ndarray:
    """One video ``[T, 3, H, W]`` in [0, 1] -> uint8 frames ``[T, H*scale, W*scale, 3]`` with tracks drawn.

    The target trajectory ``[T, K, 2]`` (normalized) is a white polyline with a
    ring at the current point; the tracked one (optional) a red polyline with a dot.
    """
    frames = (video.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).astype(np.uint8)
    t, h, w, _ = frames.shape
    size = np.array([w * scale, h * scale], dtype=np.float32)
    out = []
    for i in range(t):
        img = np.ascontiguousarray(cv2.resize(frames[i], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST))
        for k in range(target.shape[1]):
            if not bool(visibility[:, k].any()):
                continue
            pts = (target[: i + 1, k].cpu().numpy() * size).astype(np.int32)
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, TARGET_COLOR, 1, cv2.LINE_AA)
            cv2.circle(img, tuple(int(v) for v in pts[-1]), max(2, scale), TARGET_COLOR, 1, cv2.LINE_AA)
            if tracked is not None:
                tp = (tracked[: i + 1, k].cpu().numpy() * size).astype(np.int32)
                cv2.polylines(img, [tp.reshape(-1, 1, 2)], False, TRACKED_COLOR, 1, cv2.LINE_AA)
                cv2.circle(img, tuple(int(v) for v in tp[-1]), max(1, scale // 2), TRACKED_COLOR, -1, cv2.LINE_AA)
        out.append(img)
    return np.stack(out)


def save_video_grid(path: str | os.PathLike, videos: list[np.ndarray], fps: int = 4) -> Path:
    """Tile several drawn videos side by side and write a looping GIF (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.concatenate(videos, axis=2)  # [T, H, sum W, 3]
    tmp = path.with_name(f".{path.name}.tmp.gif")
    imageio.mimsave(tmp, list(frames), duration=1.0 / fps, loop=0)
    os.replace(tmp, path)
    return path


def plot_metrics(path: str | os.PathLike, rows: list[dict[str, float]], keys: list[str]) -> Path | None:
    """PNG with one panel per metric key present in ``rows`` (x = iteration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)]
    if not rows or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xs = [r.get("iteration", i) for i, r in enumerate(rows) if key in r]
        ax.plot(xs, [r[key] for r in rows if key in r], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def as_uint8(video: Tensor) -> np.ndarray:
    """``[T, 3, H, W]`` in [0, 1] -> ``[T, H, W, 3]`` uint8."""
    return (video.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).astype(np.uint8)


__all__ = ["draw_tracks", "save_video_grid", "plot_metrics", "as_uint8", "torch"]
