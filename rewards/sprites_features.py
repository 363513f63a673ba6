"""A small feature network of the Sprites-Drag world, so FID / FVD mean something on CPU.

Inception and I3D have never seen 32x32 sprites; this network has. One conv trunk per frame:

- frames: ``[N, 3, 32, 32]`` -> ``[N, D]`` (the FID features of this world);
- clips: ``[N, T, 3, 32, 32]`` (T = 8) -> ``[N, D]`` (the FVD features): temporal
  convolutions over the frames' codes.

Both were trained by ``benchmarks/train_sprites_features.py`` on train-split scenes to
predict what a scene is made of (background kind, sprite shape and pattern, path and
speed kinds, and where the sprites are in each frame), so the features encode texture,
shape, position and motion. The bundled weights are
``examples/pretrained/sprites_drag/features.safetensors`` (trunks only; the heads stay in
the training script). Frames of another size are resized to 32x32 (bilinear).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rldiff.checkpoint import load_tensors

__all__ = ["SpritesFeatureNet", "SpritesFrameFeatures", "SpritesClipFeatures"]

SIZE = 32  # frame side the network was trained on


class SpritesFeatureNet(nn.Module):
    """A shared per-frame conv trunk; ``frames`` projects one frame, ``clips`` runs temporal convolutions over the frames' codes.

    ``dim`` features each; clips of ``num_frames`` frames. BatchNorm uses its running
    statistics at evaluation, so a frame's features never depend on its batch.
    """

    def __init__(self, dim: int = 64, num_frames: int = 8, width: int = 32):
        super().__init__()
        self.dim, self.num_frames, self.width = dim, num_frames, width

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]

        w = width
        self.trunk = nn.Sequential(*block(3, w // 2, 1), *block(w // 2, w, 2), *block(w, w, 2), *block(w, w, 2))  # [N, w, 4, 4]
        self.frame_proj = nn.Linear(w * 16, dim)
        self.code = nn.Linear(w * 16, dim)  # per-frame code the temporal layers read
        self.temporal = nn.Sequential(
            nn.Conv1d(dim, dim, 3, padding=1), nn.BatchNorm1d(dim), nn.GELU(), nn.Conv1d(dim, dim, 3, stride=2, padding=1), nn.BatchNorm1d(dim), nn.GELU()
        )  # fmt: skip  # [N, dim, T/2]
        self.clip_proj = nn.Linear(dim * ((num_frames + 1) // 2), dim)

    def frames(self, x: Tensor) -> Tensor:
        """``[N, 3, 32, 32]`` in [0, 1] -> ``[N, dim]``."""
        return self.frame_proj(self.trunk(x * 2 - 1).flatten(1))

    def clips(self, x: Tensor) -> Tensor:
        """``[N, T, 3, 32, 32]`` in [0, 1] -> ``[N, dim]``."""
        n, t = x.shape[:2]
        codes = self.code(self.trunk(x.flatten(0, 1) * 2 - 1).flatten(1)).reshape(n, t, -1)  # [N, T, dim]
        return self.clip_proj(self.temporal(codes.transpose(1, 2)).flatten(1))

    def config(self) -> dict:
        return {"dim": self.dim, "num_frames": self.num_frames, "width": self.width}

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "SpritesFeatureNet":
        """Load the trunks from a safetensors file whose metadata holds the config (strict keys, errors name the file)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SpritesFeatureNet: no weights at {str(path)!r} (train them with benchmarks/train_sprites_features.py)")
        state = load_tensors(path)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        try:
            net = cls(**json.loads(meta.get("config", "{}")))
            net.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError) as e:
            raise ValueError(f"SpritesFeatureNet: {path} does not hold the feature trunks ({type(e).__name__}: {str(e)[:300]})") from e
        return net.eval().requires_grad_(False)


class _SpritesFeatures:
    def __init__(self, path: str | os.PathLike, batch_size: int = 256):
        self.path, self.batch_size = Path(path), batch_size
        self._net: SpritesFeatureNet | None = None

    @property
    def net(self) -> SpritesFeatureNet:
        if self._net is None:
            self._net = SpritesFeatureNet.from_file(self.path)
        return self._net


def _resized(frames: Tensor) -> Tensor:
    if frames.shape[-2:] == (SIZE, SIZE):
        return frames
    return F.interpolate(frames, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)


class SpritesFrameFeatures(_SpritesFeatures):
    """FID features of the Sprites-Drag world: frames ``[N, 3, H, W]`` in [0, 1] -> ``[N, D]``."""

    name = "sprites_frames"

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"SpritesFrameFeatures: frames must be [N, 3, H, W], got {tuple(frames.shape)}")
        x = _resized(frames.float().clamp(0, 1))
        return torch.cat([self.net.frames(x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)])


class SpritesClipFeatures(_SpritesFeatures):
    """FVD features of the Sprites-Drag world: clips ``[N, T, 3, H, W]`` in [0, 1] (T as trained, 8) -> ``[N, D]``."""

    name = "sprites_clips"

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> Tensor:
        if clips.dim() != 5 or clips.shape[2] != 3 or clips.shape[1] != self.net.num_frames:
            raise ValueError(f"SpritesClipFeatures: clips must be [N, {self.net.num_frames}, 3, H, W], got {tuple(clips.shape)}")
        n, t = clips.shape[:2]
        x = _resized(clips.float().clamp(0, 1).flatten(0, 1)).reshape(n, t, 3, SIZE, SIZE)  # [N, T, 3, 32, 32]
        return torch.cat([self.net.clips(x[i : i + self.batch_size]) for i in range(0, n, self.batch_size)])
