"""The bidirectional motion-control teacher of AR-Drag Step 1: a stock diffusers Wan with control channels.

The teacher sees the whole clip at once (full attention over all latent
frames, one noise level for the clip) and is trained with flow matching. Its
input is the noisy latent video concatenated on channels with the per-frame
conditioning of :mod:`policies.conditioning` (mask | reference latents |
trajectory latents), so a teacher directory saved here is a diffusers-format
Wan transformer directory that :class:`policies.CausalWan` can initialize
the causal student from.
"""

from __future__ import annotations

import os

import torch
from diffusers import WanTransformer3DModel
from tensordict import TensorDict
from torch import Tensor, nn

from policies.causal_wan_io import load_wan_transformer, tiny_config

__all__ = ["BidirectionalWan", "tiny_wan_config"]


def tiny_wan_config(latent_channels: int = 48, cond_channels: int = 100, dim: int = 96, heads: int = 4, layers: int = 3, text_dim: int = 32, patch: int = 1) -> dict:
    """A small teacher config for CPU worlds (C = 48, 8x8 latents, patch 1): :func:`policies.causal_wan_io.tiny_config`
    with the teacher's full conditioning width (mask | reference | trajectory channels)."""
    if dim % heads:
        raise ValueError(f"dim={dim} must be divisible by heads={heads}")
    return tiny_config(
        latent_channels=latent_channels, cond_channels=cond_channels, num_layers=layers, num_heads=heads,
        head_dim=dim // heads, ffn_dim=2 * dim, text_dim=text_dim, freq_dim=64, patch=patch,
    )  # fmt: skip


class BidirectionalWan(nn.Module):
    """Full-attention video velocity model: ``v = f(x [B, F, C, H, W], sigma [B], cond)``.

    Args:
        transformer: the diffusers Wan transformer.
        checkpointing: recompute each transformer block's activations in backward (diffusers'
            per-block gradient checkpointing; same numbers, less memory). Settable later.
    """

    def __init__(self, transformer: WanTransformer3DModel, checkpointing: bool = False):
        super().__init__()
        self.transformer = transformer
        self.latent_channels = int(transformer.config.out_channels)
        self.cond_channels = int(transformer.config.in_channels) - self.latent_channels
        self.checkpointing = checkpointing

    @property
    def checkpointing(self) -> bool:
        """Whether each transformer block's activations are recomputed in backward."""
        return bool(self.transformer.gradient_checkpointing)

    @checkpointing.setter
    def checkpointing(self, on: bool) -> None:
        if on:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    @classmethod
    def from_config(cls, config: dict, checkpointing: bool = False) -> "BidirectionalWan":
        return cls(WanTransformer3DModel(**config), checkpointing=checkpointing)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None, checkpointing: bool = False) -> "BidirectionalWan":
        """Load a diffusers Wan transformer directory; a config that does not fit the weights raises (see
        :func:`policies.causal_wan_io.load_wan_transformer`)."""
        return cls(load_wan_transformer(path, torch_dtype, who="BidirectionalWan.from_pretrained"), checkpointing=checkpointing)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.transformer.save_pretrained(str(path), safe_serialization=True)

    def forward(self, x: Tensor, sigma: Tensor, cond: TensorDict) -> Tensor:
        """``x [B, F, C, H, W]``, ``sigma [B]`` (one level per clip) -> velocity ``[B, F, C, H, W]``."""
        frames = cond["frames"]  # [B, F, C_cond, H, W]
        if x.dim() != 5 or x.shape[2] != self.latent_channels:
            raise ValueError(f"x must be [B, F, C={self.latent_channels}, H, W], got {tuple(x.shape)}")
        if frames.shape[:2] != x.shape[:2] or frames.shape[2] != self.cond_channels or frames.shape[3:] != x.shape[3:]:
            raise ValueError(f"cond['frames'] must be [B, F, {self.cond_channels}, H, W] matching x {tuple(x.shape)}, got {tuple(frames.shape)}")
        dtype = self.transformer.dtype
        inp = torch.cat([x, frames], dim=2).transpose(1, 2).to(dtype)  # [B, C + C_cond, F, H, W]
        image = cond.get("image", None)
        out = self.transformer(
            hidden_states=inp,
            timestep=(sigma.float() * 1000.0).to(x.device),
            encoder_hidden_states=cond["text"].to(dtype),
            encoder_hidden_states_image=image.to(dtype) if image is not None else None,
            return_dict=False,
        )[0]
        return out.transpose(1, 2).float()  # [B, F, C, H, W]
