"""Point trackers (:class:`rldiff.protocols.PointTracker`): OpenCV Lucas-Kanade and a CoTracker3 adapter.

Conventions (ARCHITECTURE.md, "Controls, trackers and rewards"): videos
``[B, T, 3, H, W]`` float in [0, 1]; queries ``[B, K, 3]`` as (t, x, y) with
t a frame index and x, y normalized (x right, y down, pixel centres at
``(i + 0.5) / W``, see :mod:`rewards.points`); tracks ``[B, T, K, 2]``
normalized; visibility ``[B, T, K]`` bool. Online use: ``reset(queries)``,
then ``step(frames [B, t, 3, H, W])`` with the frames in order from frame 0.
Online, a point reports its query position with visibility False on frames
before its query frame; offline (``track``) such frames are tracked backward.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

from rewards.cotracker import CoTrackerTracker, load_cotracker3_offline
from rewards.points import check_queries, normalized_to_pixels, pixels_to_normalized
from rldiff.protocols import PointTracker, StreamingPointTracker
from rldiff.types import check_video

__all__ = ["PointTracker", "StreamingPointTracker", "LucasKanadeTracker", "CoTrackerTracker", "load_cotracker3_offline"]

class _LKVideo:
    """Online LK state of one video: previous work image and the K points in work pixels."""

    def __init__(self, query_times: np.ndarray, query_points: np.ndarray):
        self.query_times = query_times  # [K] frame index of each query
        self.query_points = query_points  # [K, 2] work pixels
        self.points = query_points.copy()  # [K, 2]
        self.visible = np.zeros(len(query_times), dtype=bool)  # [K]
        self.prev: np.ndarray | None = None

class _LKSession:
    """One batch of videos being tracked online (created by ``reset``)."""

    def __init__(self, queries: Tensor):
        self.queries = queries.detach().float().cpu()  # [B, K, 3]
        self.videos: list[_LKVideo] = []
        self.size: tuple[int, int] | None = None
        self.scale = 1
        self.t = 0

class LucasKanadeTracker:
    """Pyramidal Lucas-Kanade optical flow (OpenCV), chained frame to frame; CPU, no weights.

    LK runs on the RGB frames (all three channels, so a red sprite on a grey
    background of equal brightness still has contrast), upsampled by an
    integer factor (bicubic) when small so that the short side reaches
    ``work_size`` pixels. With the defaults a 32 x 32 Sprites-Drag frame is
    tracked at 64 x 64 with a 21-pixel window (about 10 original pixels, a
    sprite's diameter: enough to see a plain disc's edges) and one pyramid
    level; a 256 x 256 frame is tracked as is with a 21-pixel window and three
    levels. Automatic levels: as many as keep the coarsest level at least one
    window wide, at most 4. LK needs texture or edges inside the window: the
    centre of a large uniform region cannot be tracked (it turns invisible).

    Robustness: each step is tracked forward and then backward; a point is
    visible on a frame only if OpenCV found it both ways, the backward track
    returns within ``fb_threshold`` original pixels of where it started, and it
    lies inside the image. A point that fails keeps its last reliable position
    and is tried again from there on the next frame (so a brief glitch does not
    lose it for good).

    Args:
        work_size: minimum short side, in pixels, of the images LK runs on.
        window: LK window side in work pixels (odd, >= 5).
        levels: pyramid levels above the base (``None``: automatic as above).
        fb_threshold: forward-backward error bound, in original pixels.
        max_iterations, epsilon: LK stopping criteria per pyramid level.
    """

    def __init__(
        self,
        work_size: int = 64,
        window: int = 21,
        levels: int | None = None,
        fb_threshold: float = 0.5,
        max_iterations: int = 40,
        epsilon: float = 0.003,
    ):
        if not isinstance(window, int) or window < 5 or window % 2 == 0:
            raise ValueError(f"LucasKanadeTracker: window must be an odd int >= 5, got {window!r}")
        if work_size < 1:
            raise ValueError(f"LucasKanadeTracker: work_size must be >= 1, got {work_size}")
        if fb_threshold <= 0:
            raise ValueError(f"LucasKanadeTracker: fb_threshold must be > 0, got {fb_threshold}")
        self.work_size, self.window, self.levels, self.fb_threshold = work_size, window, levels, fb_threshold
        self._criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, max_iterations, epsilon)
        self._session: _LKSession | None = None

    # ------------------------------------------------------------------ helpers
    def _scale_for(self, height: int, width: int) -> int:
        return max(1, math.ceil(self.work_size / min(height, width)))

    def _levels_for(self, shape: tuple[int, int]) -> int:
        if self.levels is not None:
            return self.levels
        return int(max(0, min(4, math.floor(math.log2(min(shape) / self.window)))))

    def _work_images(self, frames: Tensor, scale: int) -> np.ndarray:
        """``[B, t, 3, H, W]`` in [0, 1] -> uint8 RGB work images ``[B, t, H*s, W*s, 3]``."""
        rgb = frames.detach().float().permute(0, 1, 3, 4, 2).cpu().numpy()  # [B, t, H, W, 3]
        b, t, h, w, _ = rgb.shape
        out = np.empty((b, t, h * scale, w * scale, 3), dtype=np.uint8)
        for i in range(b):
            for j in range(t):
                img = rgb[i, j]
                if scale > 1:
                    img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
                out[i, j] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out

    def _flow(self, a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV pyramidal LK from image ``a`` to ``b`` for ``pts [n, 2]`` -> (new points [n, 2], found [n])."""
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(
            a, b, pts.reshape(-1, 1, 2), None,
            winSize=(self.window, self.window), maxLevel=self._levels_for(a.shape[:2]), criteria=self._criteria,
        )
        return nxt.reshape(-1, 2), status.reshape(-1).astype(bool)

    def _advance(self, video: _LKVideo, image: np.ndarray, frame_idx: int, scale: int) -> None:
        """Move ``video``'s points onto ``image`` (frame ``frame_idx``)."""
        started = video.query_times == frame_idx
        moving = video.query_times < frame_idx
        if video.prev is not None and moving.any():
            pts = video.points[moving]
            fwd, ok_f = self._flow(video.prev, image, pts)
            back, ok_b = self._flow(image, video.prev, fwd)
            h, w = image.shape[:2]
            inside = (fwd[:, 0] >= -0.5) & (fwd[:, 1] >= -0.5) & (fwd[:, 0] <= w - 0.5) & (fwd[:, 1] <= h - 0.5)
            ok = ok_f & ok_b & inside & (np.linalg.norm(back - pts, axis=1) <= self.fb_threshold * scale)
            video.points[moving] = np.where(ok[:, None], fwd, pts)
            video.visible[moving] = ok
        video.points[started] = video.query_points[started]
        video.visible[started] = True
        video.prev = image

    # ------------------------------------------------------------------ online
    def reset(self, queries: Tensor) -> None:
        """Start online tracking of ``queries [B, K, 3]``; the frame size comes with the first ``step``."""
        check_queries(queries, who="LucasKanadeTracker.reset: queries")
        self._session = _LKSession(queries)

    def step(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Track through the next pixel frames ``[B, t, 3, H, W]``; returns their tracks and visibility."""
        if self._session is None:
            raise RuntimeError("LucasKanadeTracker.step called before reset(queries)")
        return self._step(self._session, frames)

    def _step(self, session: _LKSession, frames: Tensor) -> tuple[Tensor, Tensor]:
        check_video(frames, "LucasKanadeTracker.step: frames")
        b, t, _, h, w = frames.shape
        if b != session.queries.shape[0]:
            raise ValueError(f"LucasKanadeTracker.step: frames batch {b} != queries batch {session.queries.shape[0]}")
        if session.size is None:
            session.size, session.scale = (h, w), self._scale_for(h, w)
            work_h, work_w = h * session.scale, w * session.scale
            pts = normalized_to_pixels(session.queries[..., 1:], work_h, work_w).numpy().astype(np.float32)  # [B, K, 2]
            times = session.queries[..., 0].long().numpy()  # [B, K]
            session.videos = [_LKVideo(times[i], pts[i]) for i in range(b)]
        elif session.size != (h, w):
            raise ValueError(f"LucasKanadeTracker.step: frame size changed from {session.size} to {(h, w)} within an episode")
        images = self._work_images(frames, session.scale)  # [B, t, H*s, W*s]
        k = session.queries.shape[1]
        tracks = np.zeros((b, t, k, 2), dtype=np.float32)  # [B, t, K, 2] work pixels
        vis = np.zeros((b, t, k), dtype=bool)  # [B, t, K]
        for i, video in enumerate(session.videos):
            for j in range(t):
                self._advance(video, images[i, j], session.t + j, session.scale)
                tracks[i, j] = video.points
                vis[i, j] = video.visible
        session.t += t
        work_h, work_w = h * session.scale, w * session.scale
        out = pixels_to_normalized(torch.from_numpy(tracks), work_h, work_w).to(frames.device)
        return out, torch.from_numpy(vis).to(frames.device)

    # ------------------------------------------------------------------ offline
    def track(self, video: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        """Offline: ``video [B, T, 3, H, W]``, ``queries [B, K, 3]`` -> ``(tracks [B, T, K, 2], visibility [B, T, K])``.

        Frames from each query's frame on are tracked forward (exactly what
        the online form returns); earlier frames are tracked backward on the
        time-reversed video. Does not touch the online state.
        """
        check_video(video, "LucasKanadeTracker.track: video")
        num_frames = video.shape[1]
        check_queries(queries, video.shape[0], num_frames, who="LucasKanadeTracker.track: queries")
        tracks, vis = self._step(_LKSession(queries), video)
        times = queries[..., 0].to(video.device)  # [B, K]
        if bool((times > 0).any()):
            reversed_queries = torch.cat([num_frames - 1 - queries[..., :1], queries[..., 1:]], dim=-1)  # [B, K, 3]
            back_tracks, back_vis = self._step(_LKSession(reversed_queries), video.flip(1))
            before = torch.arange(num_frames, device=video.device).view(1, -1, 1) < times.unsqueeze(1)  # [B, T, K]
            tracks = torch.where(before.unsqueeze(-1), back_tracks.flip(1), tracks)
            vis = torch.where(before, back_vis.flip(1), vis)
        return tracks, vis
