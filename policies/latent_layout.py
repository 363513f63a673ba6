"""Shape helpers shared by the codecs and the control encoder.

Temporal layout of every codec: latent frame 0 covers pixel frame 0 alone and
each later latent frame covers ``temporal_factor`` pixel frames, so
``T = 1 + (F - 1) * temporal_factor``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rldiff.types import check_video

__all__ = [
    "check_image",
    "check_latents",
    "check_pixel_video",
    "check_stream_chunk",
    "latent_frames_for",
    "pixel_frames_for",
]


def pixel_frames_for(num_latent_frames: int, temporal_factor: int) -> int:
    """Pixel frames ``T = 1 + (F - 1) * temporal_factor`` covered by ``F`` latent frames."""
    if num_latent_frames < 1:
        raise ValueError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
    return 1 + (num_latent_frames - 1) * temporal_factor


def latent_frames_for(num_pixel_frames: int, temporal_factor: int, name: str = "video") -> int:
    """Latent frames ``F = 1 + (T - 1) / temporal_factor``; raises unless ``T - 1`` is a multiple of the factor."""
    if num_pixel_frames < 1 or (num_pixel_frames - 1) % temporal_factor:
        raise ValueError(
            f"{name}: T = {num_pixel_frames} pixel frames do not fit the codec's temporal layout "
            f"(T must be 1 + k * temporal_factor = 1 + k * {temporal_factor})"
        )
    return 1 + (num_pixel_frames - 1) // temporal_factor


def check_latents(latents: Tensor, channels: int, name: str = "latents", dim: int = 5) -> None:
    """Raise unless ``latents`` is a float ``[B, F, C, H, W]`` (``dim=5``) or ``[B, C, H, W]`` (``dim=4``) tensor."""
    layout = "[B, F, C, H, W]" if dim == 5 else "[B, C, H, W]"
    if not isinstance(latents, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(latents).__name__}")
    if latents.dim() != dim or latents.shape[-3] != channels:
        raise ValueError(f"{name} must be {layout} with C = {channels}, got shape {tuple(latents.shape)}")
    if not torch.is_floating_point(latents):
        raise ValueError(f"{name} must be floating point, got dtype {latents.dtype}")


def check_image(image: Tensor, name: str = "image") -> None:
    """Raise unless ``image`` is ``[B, 3, H, W]`` float in [0, 1]."""
    if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{name} must be [B, 3, H, W] in [0, 1], got {shape}")
    check_video(image[:, None], name)


def check_pixel_video(video: Tensor, spatial_factor: int, temporal_factor: int, name: str = "video") -> int:
    """Raise unless ``video`` is ``[B, T, 3, H, W]`` in [0, 1] that a codec with these factors can encode; returns F."""
    check_video(video, name)
    h, w = video.shape[-2:]
    if h % spatial_factor or w % spatial_factor:
        raise ValueError(f"{name}: H, W = {h}, {w} must be divisible by the codec's spatial factor {spatial_factor}")
    return latent_frames_for(video.shape[1], temporal_factor, name)


def check_stream_chunk(frames: Tensor, frames_seen: int, spatial_factor: int, temporal_factor: int, name: str) -> None:
    """Raise unless ``frames [B, t, 3, H, W]`` is the next chunk of a streamed encode (t = 1 first, then the factor)."""
    check_video(frames, name)
    expected = 1 if frames_seen == 0 else temporal_factor
    if frames.shape[1] != expected:
        raise ValueError(f"{name}: call {frames_seen} expects t = {expected} pixel frames, got {frames.shape[1]}")
    check_pixel_video(frames[:, :1], spatial_factor, 1, name)
