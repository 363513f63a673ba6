"""Reference-image encoder: CLIP vision penultimate hidden states (Wan I2V ``encoder_hidden_states_image``).

:func:`clip_preprocess` reproduces ``CLIPImageProcessor`` in torch (no
torchvision, no PIL): bicubic resize of the short side to ``size`` (the long
side becomes ``int(size * long / short)``), antialiased like PIL, clamped to
[0, 1]; center crop (top = (H - h) // 2, left = (W - w) // 2); normalize with
the CLIP mean/std. It works on float images, so it differs from the
processor's uint8 PIL path by about one 8-bit quantization step.

:class:`CLIPImageEncoder` runs transformers' ``CLIPVisionModel`` and returns
``hidden_states[-2]`` (257 tokens for ViT-H/14 at 224, what the Wan I2V
pipeline uses).
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F_
from torch import Tensor

from policies.latent_layout import check_image
from policies.local_dirs import require_local_dir

__all__ = ["CLIP_MEAN", "CLIP_STD", "CLIPImageEncoder", "clip_preprocess", "resize_short_side", "center_crop"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_short_side(images: Tensor, size: int) -> Tensor:
    """``[B, 3, H, W]`` -> short side ``size``, long side ``int(size * long / short)``; bicubic, antialiased, clamped."""
    h, w = images.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    out = F_.interpolate(images.float(), size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)  # [B, 3, new_h, new_w]


def center_crop(images: Tensor, height: int, width: int) -> Tensor:
    """``[B, 3, H, W]`` -> ``[B, 3, height, width]`` around the centre (top = (H - height) // 2)."""
    h, w = images.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"center_crop: crop {height}x{width} is larger than the image {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return images[..., top : top + height, left : left + width]


def clip_preprocess(
    images: Tensor,
    size: int = 224,
    crop_size: int | tuple[int, int] = 224,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> CLIP pixel values ``[B, 3, crop_h, crop_w]``."""
    check_image(images, "clip_preprocess: images")
    crop_h, crop_w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    x = center_crop(resize_short_side(images, size), crop_h, crop_w)  # [B, 3, crop_h, crop_w]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _read_preprocessor_config(path: str, default_size: int) -> dict:
    """``size``/``crop_size``/``mean``/``std`` from a ``preprocessor_config.json`` if present, else CLIP defaults."""
    out = {"size": default_size, "crop_size": default_size, "mean": CLIP_MEAN, "std": CLIP_STD}
    file = os.path.join(path, "preprocessor_config.json")
    if not os.path.isfile(file):
        return out
    with open(file) as f:
        cfg = json.load(f)
    size = cfg.get("size", default_size)
    out["size"] = int(size["shortest_edge"]) if isinstance(size, dict) else int(size)
    crop = cfg.get("crop_size", out["size"])
    out["crop_size"] = (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else int(crop)
    out["mean"] = tuple(cfg.get("image_mean", CLIP_MEAN))
    out["std"] = tuple(cfg.get("image_std", CLIP_STD))
    return out


class CLIPImageEncoder:
    """CLIP vision features of reference images: ``[B, 3, H, W]`` in [0, 1] -> ``[B, L_img, D_img]`` float32.

    ``L_img = (image_size / patch_size)^2 + 1``, ``D_img = hidden_size``. The
    features are the penultimate layer's hidden states (``hidden_states[-2]``).
    ``size``/``crop_size``/``mean``/``std`` default to the model's
    ``image_size`` and the CLIP constants; ``from_pretrained`` reads them from
    a ``preprocessor_config.json`` when the directory has one. Frozen, ``no_grad``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        size: int | None = None,
        crop_size: int | tuple[int, int] | None = None,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        image_size = int(model.config.image_size)
        self.size = int(size) if size is not None else image_size
        self.crop_size = crop_size if crop_size is not None else image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.dim = int(model.config.hidden_size)
        self.num_tokens = (image_size // int(model.config.patch_size)) ** 2 + 1

    @classmethod
    def from_pretrained(cls, local_dir: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "CLIPImageEncoder":
        """Load ``CLIPVisionModel`` (a ``...WithProjection`` directory loads too) from a local directory."""
        from transformers import CLIPVisionModel

        path = require_local_dir(
            local_dir, "CLIPImageEncoder", ("config.json",), ("model.safetensors", "model.safetensors.index.json")
        )
        kwargs = {"local_files_only": True}
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        model = CLIPVisionModel.from_pretrained(path, **kwargs)
        pre = _read_preprocessor_config(path, int(model.config.image_size))
        return cls(model, size=pre["size"], crop_size=pre["crop_size"], mean=pre["mean"], std=pre["std"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, crop, crop]`` CLIP pixel values (float32)."""
        return clip_preprocess(images, self.size, self.crop_size, self.mean, self.std)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> penultimate hidden states ``[B, L_img, D_img]`` float32."""
        pixels = self.preprocess(images).to(self.device, self.dtype)  # [B, 3, crop, crop]
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-2].float()  # [B, L_img, D_img]
