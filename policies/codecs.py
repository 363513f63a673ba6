"""Codecs: pixel videos <-> latent videos (``rldiff.protocols.Codec``).

Two codecs meet the same protocol:

- :class:`PixelCodec` — exact, weight-free space-to-depth for CPU worlds and
  tests (pixels scaled to [-1, 1], then ``pixel_unshuffle``).
- :class:`WanVAECodec` (in :mod:`policies.wan_vae`, re-exported here) — the Wan
  causal 3D VAE with seam-free streaming decode.

Temporal layout shared by both: latent frame 0 covers pixel frame 0 alone, each
later latent frame covers ``temporal_factor`` pixel frames, so
``T = 1 + (F - 1) * temporal_factor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor

from policies.latent_layout import (
    check_image,
    check_latents,
    check_pixel_video,
    check_stream_chunk,
    latent_frames_for,
    pixel_frames_for,
)
from policies.wan_vae import WanVAECodec, WanVAEStreamDecoder, WanVAEStreamEncoder  # re-exported; diffusers loads lazily

__all__ = [
    "PixelCodec",
    "PixelStreamDecoder",
    "PixelStreamEncoder",
    "WanVAECodec",
    "WanVAEStreamDecoder",
    "WanVAEStreamEncoder",
    "check_latents",
    "latent_frames_for",
    "pixel_frames_for",
]


class PixelCodec:
    """Exact space-to-depth codec (no weights): ``C = 3 * factor**2 * temporal_factor``.

    Encode: pixels ``p`` in [0, 1] -> ``2p - 1`` in [-1, 1] -> ``pixel_unshuffle(factor)``.
    With ``temporal_factor > 1`` each latent frame after the first stacks its
    ``temporal_factor`` pixel frames on the channel axis (frame-major), and latent
    frame 0 stacks ``temporal_factor`` copies of pixel frame 0 (like a causal
    pad), so every latent frame has the same ``C``.

    Decode is the exact inverse followed by a clamp to [0, 1]. The clamp is the
    identity on anything ``encode`` produced (round trip exact to float
    rounding); it only acts on latents a model generated outside [-1, 1], so
    decoded videos always meet the [0, 1] convention. Latent frame 0 decodes to
    the first of its copies.
    """

    def __init__(self, factor: int = 4, temporal_factor: int = 1) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f"PixelCodec: factor must be a positive int, got {factor!r}")
        if int(temporal_factor) != temporal_factor or temporal_factor < 1:
            raise ValueError(f"PixelCodec: temporal_factor must be a positive int, got {temporal_factor!r}")
        self.spatial_factor = int(factor)
        self.temporal_factor = int(temporal_factor)
        self.latent_channels = 3 * self.spatial_factor**2 * self.temporal_factor

    def __repr__(self) -> str:
        return f"PixelCodec(factor={self.spatial_factor}, temporal_factor={self.temporal_factor})"

    # -- per-chunk maps (one latent frame <-> its pixel frames) ---------------
    def _encode_chunk(self, frames: Tensor) -> Tensor:
        """``[B, tf, 3, H_px, W_px]`` -> ``[B, C, H, W]``."""
        b, tf, _, hp, wp = frames.shape
        z = F_.pixel_unshuffle(frames.reshape(b * tf, 3, hp, wp) * 2.0 - 1.0, self.spatial_factor)
        return z.reshape(b, tf * z.shape[1], z.shape[2], z.shape[3])  # [B, C, H, W]

    def _decode_chunk(self, latent: Tensor, first: bool) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, t, 3, H_px, W_px]`` (``t = 1`` for latent frame 0)."""
        b, c, h, w = latent.shape
        tf = self.temporal_factor
        z = latent.reshape(b * tf, c // tf, h, w)
        x = F_.pixel_shuffle(z, self.spatial_factor).reshape(b, tf, 3, h * self.spatial_factor, w * self.spatial_factor)
        x = ((x + 1.0) * 0.5).clamp(0.0, 1.0)  # [B, tf, 3, H_px, W_px]
        return x[:, :1] if first else x

    # -- Codec protocol ---------------------------------------------------------
    def encode(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H_px, W_px]`` in [0, 1] -> ``[B, F, C, H_px/factor, W_px/factor]``."""
        num_latent = check_pixel_video(video, self.spatial_factor, self.temporal_factor, "PixelCodec.encode: video")
        b, _, _, hp, wp = video.shape
        tf = self.temporal_factor
        first = video[:, :1].expand(b, tf, 3, hp, wp)  # [B, tf, 3, H_px, W_px]
        chunks = [first] + [video[:, 1 + i * tf : 1 + (i + 1) * tf] for i in range(num_latent - 1)]
        return torch.stack([self._encode_chunk(c) for c in chunks], dim=1)  # [B, F, C, H, W]

    def encode_image(self, image: Tensor) -> Tensor:
        """``[B, 3, H_px, W_px]`` in [0, 1] -> ``[B, C, H, W]`` (a one-frame video)."""
        check_image(image, "PixelCodec.encode_image: image")
        return self.encode(image[:, None])[:, 0]

    def decode(self, latents: Tensor) -> Tensor:
        """``[B, F, C, H, W]`` -> ``[B, T, 3, H*factor, W*factor]`` in [0, 1], ``T = 1 + (F-1)*temporal_factor``."""
        check_latents(latents, self.latent_channels, "PixelCodec.decode: latents")
        frames = [self._decode_chunk(latents[:, i], first=(i == 0)) for i in range(latents.shape[1])]
        return torch.cat(frames, dim=1)  # [B, T, 3, H_px, W_px]

    def stream_decoder(self) -> "PixelStreamDecoder":
        """A fresh frame-by-frame decoder (stateless apart from knowing which frame is first)."""
        return PixelStreamDecoder(self)

    def stream_encoder(self) -> "PixelStreamEncoder":
        """A fresh chunk-by-chunk encoder: pixel frame 0 alone, then ``temporal_factor`` frames per call."""
        return PixelStreamEncoder(self)


class PixelStreamDecoder:
    """Streaming decoder of :class:`PixelCodec`; outputs concatenate to ``codec.decode`` exactly."""

    def __init__(self, codec: PixelCodec) -> None:
        self.codec = codec
        self.frames_seen = 0

    def decode_next(self, latent_frame: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, t, 3, H_px, W_px]``: ``t = 1`` for the first call, ``temporal_factor`` after."""
        check_latents(latent_frame, self.codec.latent_channels, "PixelStreamDecoder.decode_next: latent_frame", dim=4)
        out = self.codec._decode_chunk(latent_frame, first=(self.frames_seen == 0))
        self.frames_seen += 1
        return out


class PixelStreamEncoder:
    """Streaming encoder of :class:`PixelCodec`; outputs stack to ``codec.encode`` exactly."""

    def __init__(self, codec: PixelCodec) -> None:
        self.codec = codec
        self.frames_seen = 0

    def encode_next(self, frames: Tensor) -> Tensor:
        """``[B, t, 3, H_px, W_px]`` (``t = 1`` first, then ``temporal_factor``) -> ``[B, C, H, W]``."""
        codec = self.codec
        name = "PixelStreamEncoder.encode_next: frames"
        check_stream_chunk(frames, self.frames_seen, codec.spatial_factor, codec.temporal_factor, name)
        if self.frames_seen == 0:
            frames = frames.expand(-1, self.codec.temporal_factor, -1, -1, -1)  # [B, tf, 3, H_px, W_px]
        self.frames_seen += 1
        return self.codec._encode_chunk(frames)

