"""Feature networks of the evaluation metrics, loaded lazily from local TorchScript files (never downloaded).

- :class:`InceptionFeatures` (FID): the Inception-v3 TorchScript file of NVlabs'
  metrics (``inception-2015-12-05.pt``, what clean-fid and StyleGAN2-ADA/StyleGAN-V load):
  ``model(x, return_features=True) -> [N, 2048]`` pool features for ``x [N, 3, 299, 299]``
  float in 0..255. Frames are resized here (bilinear) and scaled.
- :class:`I3DFeatures` (FVD): StyleGAN-V's ``i3d_torchscript.pt``:
  ``model(x, rescale=False, resize=False, return_features=True) -> [N, 400]`` for clips
  ``x [N, 3, T, 224, 224]`` in [-1, 1] (fvd-comparison's convention). Clips are resized
  and scaled here; the standard protocol uses 16-frame clips.
- :class:`TorchScriptInterpolator` (motion smoothness): any TorchScript module with
  ``forward(before, after) -> middle`` on ``[N, 3, H, W]`` in [0, 1] (wrap AMT-S, VBench's
  interpolator, in such a module to get VBench-comparable figures).

All three satisfy ``extractor(batch) -> [N, D]`` / ``interpolate(a, b) -> mid`` as
:mod:`rldiff.metrics` takes them. Import touches no file; the first call loads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["load_torchscript", "InceptionFeatures", "I3DFeatures", "TorchScriptInterpolator"]


def load_torchscript(path: str | os.PathLike, what: str, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``torch.jit.load`` of a local file in eval mode; a missing or unreadable file raises naming ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no TorchScript file at {str(path)!r} (nothing is downloaded: give the local path of the file)")
    try:
        module = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as e:  # zip/pickle/TorchScript errors of a truncated or non-TorchScript file
        raise ValueError(f"{what}: {str(path)!r} is not a readable TorchScript file ({type(e).__name__}: {str(e)[:200]})") from e
    return module.eval()


class _Lazy:
    """Loads its TorchScript file on first call."""

    what = "feature network"

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}")
        self.path, self.device, self.batch_size = Path(path), torch.device(device), batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_torchscript(self.path, f"{type(self).__name__} ({self.what})", self.device)
        return self._model

    def _run(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, batch: Tensor) -> Tensor:
        outs = [self._run(batch[i : i + self.batch_size].to(self.device).float()).float().cpu() for i in range(0, batch.shape[0], self.batch_size)]
        out = torch.cat(outs)
        if out.dim() != 2 or out.shape[0] != batch.shape[0]:
            raise ValueError(f"{type(self).__name__}: {self.path} returned features of shape {tuple(out.shape)}, expected [{batch.shape[0]}, D]")
        return out  # [N, D]


class InceptionFeatures(_Lazy):
    """FID features: frames ``[N, 3, H, W]`` in [0, 1] -> Inception pool features ``[N, D]`` (D = 2048 for the standard file)."""

    what = "Inception-v3 TorchScript, e.g. inception-2015-12-05.pt"
    name = "inception"
    size = 299

    def _run(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"InceptionFeatures: frames must be [N, 3, H, W], got {tuple(x.shape)}")
        x = F.interpolate(x.clamp(0, 1), size=(self.size, self.size), mode="bilinear", align_corners=False)  # [N, 3, 299, 299]
        return self.model(x * 255.0, return_features=True)


class I3DFeatures(_Lazy):
    """FVD features: clips ``[N, T, 3, H, W]`` in [0, 1] -> I3D features ``[N, D]`` (D = 400 for StyleGAN-V's file)."""

    what = "I3D TorchScript, e.g. StyleGAN-V's i3d_torchscript.pt"
    name = "i3d"
    size = 224

    def _run(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"I3DFeatures: clips must be [N, T, 3, H, W], got {tuple(x.shape)}")
        n, t = x.shape[:2]
        frames = F.interpolate(x.flatten(0, 1).clamp(0, 1), size=(self.size, self.size), mode="bilinear", align_corners=False)  # [N*T, 3, 224, 224]
        clips = frames.reshape(n, t, 3, self.size, self.size).transpose(1, 2) * 2 - 1  # [N, 3, T, 224, 224] in [-1, 1]
        return self.model(clips, rescale=False, resize=False, return_features=True)


class TorchScriptInterpolator(_Lazy):
    """Frame interpolation by a local TorchScript module ``forward(before, after) -> middle`` (``[N, 3, H, W]`` in [0, 1])."""

    what = "frame interpolation TorchScript, forward(before, after) -> middle"
    name = "torchscript"

    @torch.no_grad()
    def __call__(self, before: Tensor, after: Tensor) -> Tensor:
        if before.shape != after.shape or before.dim() != 4:
            raise ValueError(f"TorchScriptInterpolator: before and after must be [N, 3, H, W] of one shape, got {tuple(before.shape)} and {tuple(after.shape)}")
        outs = [
            self.model(before[i : i + self.batch_size].to(self.device).float(), after[i : i + self.batch_size].to(self.device).float()).float().cpu()
            for i in range(0, before.shape[0], self.batch_size)
        ]  # fmt: skip
        out = torch.cat(outs)
        if out.shape != before.shape:
            raise ValueError(f"TorchScriptInterpolator: {self.path} returned {tuple(out.shape)}, expected {tuple(before.shape)}")
        return out
