"""CoTracker3 behind :class:`rldiff.protocols.PointTracker` (optional dependency, loaded from local files).

CoTracker3 is not on the package index and its licence is non-commercial, so
rldiff neither vendors nor downloads it: the user keeps a checkout and the
weights locally. Its documented predictor API (``hubconf.cotracker3_offline``
-> ``CoTrackerPredictor``): ``predictor(video, queries=queries)`` with video
``(B, T, 3, H, W)`` float in 0..255 and queries ``(B, N, 3)`` as (t, x, y)
pixels returns ``(tracks (B, T, N, 2) pixels, visibility (B, T, N) bool)``.
The offline predictor fails for B > 1, so the adapter loops over the batch.
Importing CoTracker's model reseeds the global RNG, so the adapter restores
the caller's RNG state around loading and every call.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from rewards.points import check_queries, normalized_to_pixels, pixels_to_normalized
from rldiff.types import check_video

__all__ = ["CoTrackerTracker", "load_cotracker3_offline", "load_state_dict", "COTRACKER_INSTALL"]

COTRACKER_INSTALL = (
    "CoTracker3 is an optional dependency that rldiff never downloads. Install it from a local checkout:\n"
    "  git clone https://github.com/facebookresearch/co-tracker && pip install -e ./co-tracker\n"
    "and keep the CoTracker3 offline weights (scaled_offline.pth) on disk; then pass\n"
    "  CoTrackerTracker(checkout_dir='path/to/co-tracker', checkpoint_path='path/to/scaled_offline.pth')"
)


@contextlib.contextmanager
def preserved_rng(device: torch.device | str = "cpu") -> Iterator[None]:
    """Restore torch (CPU and, for a CUDA ``device``, CUDA), NumPy and Python RNG states on exit."""
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or ``.pth``/``.pt`` (``weights_only=True``); a top-level ``"model"`` entry is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path: no weights file at {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        return state
    raise ValueError(f"checkpoint_path must end in .safetensors, .pth, .pt or .bin, got {str(path)!r}")


def load_cotracker3_offline(checkout_dir: str | Path, checkpoint_path: str | Path, device: torch.device | str = "cpu"):
    """The CoTracker3 offline predictor from a local checkout (``torch.hub`` source ``local``) and local weights."""
    checkout = Path(checkout_dir)
    if not (checkout / "hubconf.py").is_file():
        raise FileNotFoundError(f"checkout_dir: expected a CoTracker checkout with hubconf.py at {str(checkout)!r}\n{COTRACKER_INSTALL}")
    state = load_state_dict(checkpoint_path)
    try:
        predictor = torch.hub.load(str(checkout), "cotracker3_offline", source="local", pretrained=False)
    except ImportError as err:  # ModuleNotFoundError included
        raise ImportError(f"CoTrackerTracker: could not import cotracker ({err}).\n{COTRACKER_INSTALL}") from err
    predictor.model.load_state_dict(state)
    return predictor.to(device).eval()


class CoTrackerTracker:
    """CoTracker3 (offline predictor) as a :class:`rldiff.protocols.PointTracker`.

    The model loads lazily on first use from ``checkout_dir`` and
    ``checkpoint_path`` (both checked at construction). ``loader`` replaces the
    loading step: a zero-argument callable returning an object with the
    predictor API above (used by tests and by users with another build).

    Online use re-runs the offline predictor on all frames received so far at
    every ``step`` and returns the new frames' tracks: a T-frame episode fed
    frame by frame costs about T^2 / 2 frame-passes (T passes' worth per
    frame at the end) instead of T, which is fine for short clips; for long
    videos score offline with ``track``. Queries whose frame has not arrived
    yet report their query position with visibility False.

    Args:
        checkout_dir: local CoTracker checkout (has ``hubconf.py``).
        checkpoint_path: CoTracker3 offline weights (``.pth`` or ``.safetensors``).
        device: where the model runs; videos are moved there and results back.
        loader: optional replacement for :func:`load_cotracker3_offline`.
    """

    def __init__(
        self,
        checkout_dir: str | Path | None = None,
        checkpoint_path: str | Path | None = None,
        device: torch.device | str = "cpu",
        loader: Callable[[], object] | None = None,
    ):
        if loader is None:
            if checkout_dir is None or not Path(checkout_dir).is_dir():
                raise FileNotFoundError(f"CoTrackerTracker: checkout_dir {checkout_dir!r} is not a directory.\n{COTRACKER_INSTALL}")
            if checkpoint_path is None or not Path(checkpoint_path).is_file():
                raise FileNotFoundError(f"CoTrackerTracker: checkpoint_path {checkpoint_path!r} is not a file.\n{COTRACKER_INSTALL}")
            loader = lambda: load_cotracker3_offline(checkout_dir, checkpoint_path, device)  # noqa: E731
        self.device = torch.device(device)
        self._loader = loader
        self._predictor = None
        self._queries: Tensor | None = None
        self._frames: list[Tensor] = []

    def _model(self):
        if self._predictor is None:
            with preserved_rng(self.device):
                self._predictor = self._loader()
        return self._predictor

    def track(self, video: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        """Offline: ``video [B, T, 3, H, W]`` in [0, 1], ``queries [B, K, 3]`` -> normalized tracks and visibility."""
        check_video(video, "CoTrackerTracker.track: video")
        b, t, _, h, w = video.shape
        check_queries(queries, b, t, who="CoTrackerTracker.track: queries")
        model = self._model()
        k = queries.shape[1]
        pix = torch.cat([queries[..., :1], normalized_to_pixels(queries[..., 1:], h, w)], dim=-1)  # [B, K, 3]
        tracks, vis = [], []
        for i in range(b):  # the offline predictor fails for B > 1
            clip = video[i : i + 1].to(self.device).float() * 255.0  # [1, T, 3, H, W] in 0..255
            with preserved_rng(self.device), torch.no_grad():
                tr, vi = model(clip, queries=pix[i : i + 1].to(self.device).float())
            if tuple(tr.shape) != (1, t, k, 2) or tuple(vi.shape) != (1, t, k):
                raise ValueError(
                    f"CoTrackerTracker: predictor returned tracks {tuple(tr.shape)} and visibility {tuple(vi.shape)}, "
                    f"expected (1, T, K, 2) = {(1, t, k, 2)} and (1, T, K) = {(1, t, k)}"
                )
            tracks.append(tr.float().to(video.device))
            vis.append(vi.to(video.device) if vi.dtype == torch.bool else vi.to(video.device) > 0.5)
        tracks = pixels_to_normalized(torch.cat(tracks, dim=0), h, w)  # [B, T, K, 2]
        return tracks, torch.cat(vis, dim=0)

    def reset(self, queries: Tensor) -> None:
        """Start online tracking of ``queries [B, K, 3]``."""
        check_queries(queries, who="CoTrackerTracker.reset: queries")
        self._queries, self._frames = queries.detach().clone(), []

    def step(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Feed frames ``[B, t, 3, H, W]``; re-runs the offline predictor on all frames so far (see class doc)."""
        if self._queries is None:
            raise RuntimeError("CoTrackerTracker.step called before reset(queries)")
        check_video(frames, "CoTrackerTracker.step: frames")
        if frames.shape[0] != self._queries.shape[0]:
            raise ValueError(f"CoTrackerTracker.step: frames batch {frames.shape[0]} != queries batch {self._queries.shape[0]}")
        self._frames.append(frames.detach())
        video = torch.cat(self._frames, dim=1)  # [B, T_so_far, 3, H, W]
        seen = video.shape[1]
        queries = self._queries.to(video.device)
        pending = queries[..., 0] >= seen  # [B, K] query frame not arrived yet
        safe = torch.where(pending.unsqueeze(-1), torch.cat([torch.zeros_like(queries[..., :1]), queries[..., 1:]], -1), queries)
        tracks, vis = self.track(video, safe)
        t = frames.shape[1]
        tracks, vis = tracks[:, -t:], vis[:, -t:]  # [B, t, K, 2], [B, t, K]
        frame_idx = torch.arange(seen - t, seen, device=video.device).view(1, -1, 1)  # [1, t, 1]
        before = frame_idx < queries[..., 0].unsqueeze(1)  # [B, t, K]
        tracks = torch.where(before.unsqueeze(-1), queries[..., 1:].unsqueeze(1).expand_as(tracks), tracks)
        return tracks, vis & ~before
