"""Point conventions shared by the trackers and the trajectory reward.

Normalized image coordinates (x right, y down) cover the image from its left
/ top edge (0) to its right / bottom edge (1); pixel ``i`` covers
``[i/W, (i+1)/W]`` and its centre is at ``(i + 0.5) / W``. Pixel coordinates
(OpenCV, CoTracker) put pixel ``i``'s centre at ``i``. So
``x_px = x * W - 0.5`` and back ``x = (x_px + 0.5) / W``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["normalized_to_pixels", "pixels_to_normalized", "check_queries", "check_tracks"]


def normalized_to_pixels(xy: Tensor, height: int, width: int) -> Tensor:
    """``[..., 2]`` normalized (x, y) -> pixel coordinates of a ``height x width`` image."""
    scale = xy.new_tensor([width, height])
    return xy * scale - 0.5


def pixels_to_normalized(xy: Tensor, height: int, width: int) -> Tensor:
    """``[..., 2]`` pixel (x, y) of a ``height x width`` image -> normalized coordinates."""
    scale = xy.new_tensor([width, height])
    return (xy + 0.5) / scale


def check_queries(queries: Tensor, batch: int | None = None, num_frames: int | None = None, who: str = "queries") -> None:
    """Raise unless ``queries`` is a finite float ``[B, K, 3]`` of (t, x, y) with integer t in ``[0, num_frames)``."""
    if not isinstance(queries, Tensor) or queries.dim() != 3 or queries.shape[-1] != 3:
        shape = tuple(queries.shape) if isinstance(queries, Tensor) else type(queries).__name__
        raise ValueError(f"{who} must be [B, K, 3] as (t, x, y), got {shape}")
    if not torch.is_floating_point(queries):
        raise ValueError(f"{who} must be float (t, x, y), got dtype {queries.dtype}")
    if not bool(torch.isfinite(queries).all()):
        raise ValueError(f"{who} contain NaN or inf")
    if batch is not None and queries.shape[0] != batch:
        raise ValueError(f"{who}: batch {queries.shape[0]} != video batch {batch}")
    t = queries[..., 0]
    if queries.numel() and not bool((t == t.round()).all() and (t >= 0).all()):
        raise ValueError(f"{who}: query times (column 0) must be frame indices >= 0, got {t.unique().tolist()[:8]}")
    if num_frames is not None and queries.numel() and int(t.max()) >= num_frames:
        raise ValueError(f"{who}: query time {int(t.max())} is outside the video's {num_frames} frames")


def check_tracks(tracks: Tensor, visibility: Tensor, shape: tuple[int, int, int], who: str) -> None:
    """Raise unless a tracker's output is ``tracks [B, t, K, 2]`` finite float and ``visibility [B, t, K]`` bool.

    ``who`` names the tracker in the message.
    """
    b, t, k = shape
    if not isinstance(tracks, Tensor) or tuple(tracks.shape) != (b, t, k, 2):
        got = tuple(tracks.shape) if isinstance(tracks, Tensor) else type(tracks).__name__
        raise ValueError(f"{who} returned tracks of shape {got}, expected [B, t, K, 2] = {(b, t, k, 2)}")
    if not torch.is_floating_point(tracks) or not bool(torch.isfinite(tracks).all()):
        raise ValueError(f"{who} returned tracks with NaN/inf or a non-float dtype ({tracks.dtype})")
    if not isinstance(visibility, Tensor) or tuple(visibility.shape) != (b, t, k) or visibility.dtype != torch.bool:
        got = (tuple(visibility.shape), visibility.dtype) if isinstance(visibility, Tensor) else type(visibility).__name__
        raise ValueError(f"{who} returned visibility {got}, expected bool [B, t, K] = {(b, t, k)}")
