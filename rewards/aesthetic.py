"""LAION improved aesthetic predictor: an MLP head on the L2-normalized CLIP ViT-L/14 image embedding.

Both parts load lazily from local files: the CLIP vision tower with
``transformers.CLIPVisionModelWithProjection.from_pretrained(clip_path)``
(a CLIPVisionModelWithProjection directory or a full CLIPModel directory such
as ``openai/clip-vit-large-patch14``), the head from ``head_path`` (``.pth``
loaded with ``weights_only=True``, or ``.safetensors``) in the original key
layout ``layers.{0,2,4,6,7}.{weight,bias}``. The CLIP preprocessing is written
in torch (no torchvision, no PIL).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rewards.base import FrameReward
from rewards.registry import register_reward
from rldiff.checkpoint import load_json, load_tensors
from rldiff.types import Control

__all__ = ["AestheticReward", "LaionAestheticHead", "clip_preprocess", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HEAD_KEYS = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]


def clip_preprocess(images: Tensor, size: int, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD) -> Tensor:
    """CLIP's image preprocessing: ``[N, 3, H, W]`` in [0, 1] -> ``[N, 3, size, size]`` normalized.

    As transformers' ``CLIPImageProcessor``: resize the short side to
    ``size`` (long side ``int(size * long / short)``) with antialiased bicubic
    interpolation (PIL's kernel), center-crop ``size x size`` (offset
    ``(extent - size) // 2``), subtract ``mean`` and divide by ``std`` per
    channel. Unlike the PIL path the resized image is neither computed in
    fixed point nor rounded to 8 bits (differences up to about one grey level).
    """
    h, w = images.shape[-2:]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if w <= h else (size, new_long)
    x = images.float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)  # [N, 3, h', w']
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size]  # [N, 3, size, size]
    m = x.new_tensor(mean).view(1, -1, 1, 1)
    s = x.new_tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


class LaionAestheticHead(nn.Module):
    """The LAION improved aesthetic MLP: Linear d-1024, Dropout .2, Linear 1024-128, Dropout .2,
    Linear 128-64, Dropout .1, Linear 64-16, Linear 16-1 (no activations); keys ``layers.{0,2,4,6,7}``."""

    def __init__(self, in_features: int = 768, widths: tuple[int, int, int, int] = (1024, 128, 64, 16)):
        super().__init__()
        a, b, c, d = widths
        self.layers = nn.Sequential(
            nn.Linear(in_features, a), nn.Dropout(0.2), nn.Linear(a, b), nn.Dropout(0.2),
            nn.Linear(b, c), nn.Dropout(0.1), nn.Linear(c, d), nn.Linear(d, 1),
        )  # fmt: skip

    def forward(self, embeds: Tensor) -> Tensor:
        """``[N, d]`` L2-normalized CLIP image embeddings -> ``[N]`` scores (about 1-10)."""
        return self.layers(embeds).squeeze(-1)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], source: str = "state dict") -> "LaionAestheticHead":
        """Build the head with the widths found in ``state`` and load it (strict keys)."""
        missing = [k for k in _HEAD_KEYS if k not in state]
        unexpected = sorted(set(state) - set(_HEAD_KEYS))
        if missing or unexpected:
            raise KeyError(f"{source}: not a LAION aesthetic head (keys layers.{{0,2,4,6,7}}.weight/bias); missing {missing}, unexpected {unexpected[:8]}")
        widths = tuple(int(state[f"layers.{i}.weight"].shape[0]) for i in (0, 2, 4, 6))
        head = cls(int(state["layers.0.weight"].shape[1]), widths)  # type: ignore[arg-type]
        try:
            head.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as e:  # a tensor whose shape does not chain with the others
            raise ValueError(f"{source}: the head's tensor shapes do not fit together: {e}") from e
        return head


def load_head_state(head_path: Path) -> dict[str, Tensor]:
    """``.safetensors`` or ``.pth``/``.pt`` (``weights_only=True``) -> state dict."""
    if head_path.suffix == ".safetensors":
        return load_tensors(head_path)  # a truncated or garbage file raises naming the path
    if head_path.suffix in (".pth", ".pt"):
        try:
            state = torch.load(str(head_path), map_location="cpu", weights_only=True)
        except Exception as e:  # pickle/zip errors of a truncated or garbage file
            raise ValueError(f"head_path {str(head_path)!r}: expected a torch state dict file, could not read it ({type(e).__name__}: {e})") from e
        if not isinstance(state, dict):
            raise TypeError(f"head_path {str(head_path)!r} holds a {type(state).__name__}, expected a state dict")
        return state
    raise ValueError(f"head_path must end in .pth, .pt or .safetensors, got {str(head_path)!r}")


@register_reward("aesthetic")
class AestheticReward(FrameReward):
    """LAION aesthetic score of every frame (about 1-10), batched over frames.

    Reads nothing from the control: ``score(video, None)`` and ``reset(None)`` work.

    Args:
        clip_path: local directory of a CLIP ViT-L/14 (``config.json`` + weights).
        head_path: local LAION head weights (``.pth`` or ``.safetensors``).
        device: where CLIP and the head run (frames are moved there, results back).
        dtype: CLIP's dtype, a ``torch.dtype`` or its name (``"bfloat16"``); the head and the score stay float32.
        batch_size: frames per CLIP forward pass.
    """

    needs_control = False

    def __init__(
        self,
        clip_path: str | Path,
        head_path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int = 32,
    ):
        super().__init__()
        self.clip_path, self.head_path = Path(clip_path), Path(head_path)
        if not (self.clip_path / "config.json").is_file():
            raise FileNotFoundError(f"AestheticReward: clip_path {str(clip_path)!r} is not a local CLIP directory with config.json")
        if not self.head_path.is_file():
            raise FileNotFoundError(f"AestheticReward: head_path {str(head_path)!r} is not a file (LAION head .pth or .safetensors)")
        if batch_size < 1:
            raise ValueError(f"AestheticReward: batch_size must be >= 1, got {batch_size}")
        if isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"AestheticReward: dtype must be a torch dtype or its name, got {dtype!r}")
            dtype = getattr(torch, dtype)
        self.device, self.dtype, self.batch_size = torch.device(device), dtype, batch_size
        self._clip = None
        self._head: LaionAestheticHead | None = None

    def load(self) -> None:
        """Load CLIP and the head (done on first use)."""
        if self._clip is not None:
            return
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        full = load_json(self.clip_path / "config.json")  # a garbage config.json raises naming the file
        config = CLIPVisionConfig.from_pretrained(str(self.clip_path))  # a full CLIPModel dir: its vision_config
        if full.get("model_type") == "clip" and "projection_dim" in full:
            config.projection_dim = full["projection_dim"]  # CLIPModel keeps the projection size at the top level
        clip = CLIPVisionModelWithProjection.from_pretrained(str(self.clip_path), config=config, dtype=self.dtype)
        clip = clip.to(self.device).eval()
        head = LaionAestheticHead.from_state_dict(load_head_state(self.head_path), f"head_path {str(self.head_path)!r}")
        dim = clip.config.projection_dim
        if head.layers[0].in_features != dim:
            raise ValueError(f"head_path {str(self.head_path)!r} expects {head.layers[0].in_features}-d embeddings, CLIP at {str(self.clip_path)!r} gives {dim}-d")
        self._clip, self._head = clip.requires_grad_(False), head.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> L2-normalized CLIP image embeddings ``[N, d]`` float32."""
        self.load()
        size = int(self._clip.config.image_size)
        out = []
        for chunk in images.split(self.batch_size):
            pixels = clip_preprocess(chunk.to(self.device), size).to(self.dtype)  # [n, 3, S, S]
            emb = self._clip(pixel_values=pixels).image_embeds.float()  # [n, d]
            out.append(emb / emb.norm(dim=-1, keepdim=True))
        return torch.cat(out, dim=0)

    @torch.no_grad()
    def frame_reward(self, frames: Tensor, control: Control | None, start: int) -> Tensor:
        """``frames [B, t, 3, H, W]`` -> aesthetic scores ``[B, t]``."""
        self.load()
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])  # [B*t, 3, H, W]
        scores = self._head(self.embed(flat)) if flat.shape[0] else flat.new_zeros(0)  # [B*t]
        return scores.view(b, t).to(frames.device)
