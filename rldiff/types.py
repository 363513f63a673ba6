"""Typed containers shared by envs, policies and rewards (contract: ``Control``)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Control", "check_video"]


def check_video(video: Tensor, name: str = "video") -> None:
    """Raise unless ``video`` is ``[B, T, 3, H, W]`` float in [0, 1] (the reward/tracker convention)."""
    if not isinstance(video, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, T, 3, H, W], got {type(video).__name__}")
    if video.dim() != 5 or video.shape[2] != 3:
        raise ValueError(f"{name} must be [B, T, 3, H, W], got shape {tuple(video.shape)}")
    if not torch.is_floating_point(video):
        raise ValueError(f"{name} must be float in [0, 1], got dtype {video.dtype}")
    if video.numel():
        lo, hi = float(video.min()), float(video.max())
        if not (lo >= -1e-3 and hi <= 1.0 + 1e-3):  # also false for NaN
            raise ValueError(f"{name} values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


@dataclass
class Control:
    """A batch of ``B`` motion controls.

    Fields (keyword-constructed):
        trajectory: ``[B, T, K, 2]`` float, (x, y) in normalized image coordinates
            in [0, 1] (x right, y down), one point per pixel frame and track.
        visibility: ``[B, T, K]`` bool, whether track k is visible at frame t.
            Visible points must lie in [0, 1].
        reference: ``[B, 3, H, W]`` float in [0, 1], the first frame.
        prompt: ``B`` captions.
        text_embeds: optional precomputed text embeddings ``[B, L, D]``.
        image_embeds: optional precomputed reference-image embeddings ``[B, L', D']``.
    """

    trajectory: Tensor
    visibility: Tensor
    reference: Tensor
    prompt: list[str]
    text_embeds: Tensor | None = None
    image_embeds: Tensor | None = None

    def __post_init__(self) -> None:
        traj, vis, ref = self.trajectory, self.visibility, self.reference
        if not isinstance(traj, Tensor) or traj.dim() != 4 or traj.shape[-1] != 2:
            shape = tuple(traj.shape) if isinstance(traj, Tensor) else type(traj).__name__
            raise ValueError(f"Control.trajectory must be [B, T, K, 2], got {shape}")
        if not torch.is_floating_point(traj):
            raise ValueError(f"Control.trajectory must be float, got dtype {traj.dtype}")
        if not bool(torch.isfinite(traj).all()):
            raise ValueError("Control.trajectory contains NaN or inf")
        b, t, k, _ = traj.shape
        if not isinstance(vis, Tensor) or tuple(vis.shape) != (b, t, k) or vis.dtype != torch.bool:
            got = (tuple(vis.shape), vis.dtype) if isinstance(vis, Tensor) else type(vis).__name__
            raise ValueError(f"Control.visibility must be bool [B, T, K] = {(b, t, k)}, got {got}")
        visible = traj[vis]  # [V, 2]
        if visible.numel() and not (float(visible.min()) >= 0.0 and float(visible.max()) <= 1.0):
            raise ValueError(
                "Control.trajectory: visible points must be in normalized coordinates [0, 1], "
                f"got range [{float(visible.min()):.4g}, {float(visible.max()):.4g}]"
            )
        if not isinstance(ref, Tensor) or ref.dim() != 4 or ref.shape[:2] != (b, 3):
            shape = tuple(ref.shape) if isinstance(ref, Tensor) else type(ref).__name__
            raise ValueError(f"Control.reference must be [B={b}, 3, H, W], got {shape}")
        if not torch.is_floating_point(ref) or not (float(ref.min()) >= 0.0 and float(ref.max()) <= 1.0):
            raise ValueError("Control.reference must be float in [0, 1]")
        if isinstance(self.prompt, str):
            raise ValueError("Control.prompt must be a list of B strings, got a single str")
        self.prompt = list(self.prompt)
        if len(self.prompt) != b:
            raise ValueError(f"Control.prompt must hold B={b} captions, got {len(self.prompt)}")
        for i, caption in enumerate(self.prompt):
            if not isinstance(caption, str):
                raise TypeError(f"Control.prompt must be a list of B strings, got {type(caption).__name__} {caption!r:.100} at index {i}")
        for name in ("text_embeds", "image_embeds"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Tensor) or value.shape[0] != b):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"Control.{name} must be a tensor with leading dim B={b}, got {shape}")

    @property
    def batch_size(self) -> int:
        return self.trajectory.shape[0]

    @property
    def num_frames(self) -> int:
        """Pixel frames T covered by the trajectory."""
        return self.trajectory.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the reference image."""
        return int(self.reference.shape[-2]), int(self.reference.shape[-1])

    def __len__(self) -> int:
        return self.batch_size

    def _map(self, fn, prompt: list[str] | None = None) -> "Control":
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kwargs[f.name] = fn(value) if isinstance(value, Tensor) else value
        if prompt is not None:
            kwargs["prompt"] = prompt
        return Control(**kwargs)

    def index(self, idx: Tensor | list[int] | slice) -> "Control":
        """Select controls: ``idx`` is a slice, a list or a 1-D long tensor of batch indices."""
        if isinstance(idx, slice):
            rows = list(range(self.batch_size))[idx]
        else:
            rows = [int(i) for i in (idx.tolist() if isinstance(idx, Tensor) else idx)]
        for r in rows:
            if not 0 <= r < self.batch_size:
                raise IndexError(f"Control.index: index {r} out of range for batch size {self.batch_size}")
        index = torch.tensor(rows, dtype=torch.long)
        return self._map(lambda t: t.index_select(0, index.to(t.device)), prompt=[self.prompt[r] for r in rows])

    def repeat_interleave(self, repeats: int) -> "Control":
        """Each control ``repeats`` times in a row: ``[B] -> [B * repeats]`` (the ``[B, G]`` layout)."""
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        return self.index(torch.arange(self.batch_size).repeat_interleave(repeats))

    def to(self, device: torch.device | str) -> "Control":
        return self._map(lambda t: t.to(device))

    def with_(self, **changes) -> "Control":
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    @staticmethod
    def cat(controls: list["Control"]) -> "Control":
        """Concatenate along the batch axis."""
        if not controls:
            raise ValueError("Control.cat needs at least one control")
        kwargs = {}
        for f in fields(Control):
            values = [getattr(c, f.name) for c in controls]
            if f.name == "prompt":
                kwargs[f.name] = [p for v in values for p in v]
            elif all(v is None for v in values):
                kwargs[f.name] = None
            elif any(v is None for v in values):
                raise ValueError(f"Control.cat: field {f.name} is set on some controls and not on others")
            else:
                kwargs[f.name] = torch.cat(values, dim=0)
        return Control(**kwargs)
