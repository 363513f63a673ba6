"""``WanVAECodec``: the Wan causal 3D VAE (diffusers ``AutoencoderKLWan``) as a ``Codec``.

Built on diffusers' ``AutoencoderKLWan`` (0.42). Its ``encode``/``decode`` clear
the causal-conv feature cache (``clear_cache``: ``_feat_map``, ``_conv_idx``) on
every call, so decoding a video one latent frame at a time through
``vae.decode`` leaves seams. The streaming classes here call the same
``vae.decoder``/``vae.encoder`` modules chunk by chunk exactly as
``AutoencoderKLWan._decode``/``_encode`` do, but keep their own cache list
between calls: concatenated streamed outputs equal the full decode/encode.

Latent normalization follows the diffusers Wan pipelines: the posterior mean
("argmax" mode) is normalized as ``(z - latents_mean) / latents_std`` with the
VAE config's per-channel lists, and denormalized before decoding. Pixels are
mapped [0, 1] -> [-1, 1] before the encoder and back (clamped) after decoding.
Codec outputs (latents and pixels) are float32 on the VAE's device. The VAE is
frozen (``eval``, ``requires_grad_(False)``); calls run under ``no_grad``.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from policies.latent_layout import check_image, check_latents, check_pixel_video, check_stream_chunk
from policies.local_dirs import require_local_dir

__all__ = ["WanVAECodec", "WanVAEStreamDecoder", "WanVAEStreamEncoder"]

_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


def _count_causal_convs(module: torch.nn.Module) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class WanVAECodec:
    """Codec over an ``AutoencoderKLWan``: ``[B, T, 3, H, W]`` in [0, 1] <-> ``[B, F, z_dim, H/s, W/s]``.

    ``s = spatial_factor`` (8 for Wan 2.1), ``F = 1 + (T - 1) / temporal_factor``
    (temporal factor 4 for Wan 2.1). Build with ``WanVAECodec(vae)`` for an
    in-memory model or ``WanVAECodec.from_pretrained(local_dir)`` for a diffusers
    directory (``config.json`` + ``diffusion_pytorch_model.safetensors``).
    Spatial tiling (``vae.enable_tiling``) is not supported by the streaming
    classes; leave it off.
    """

    def __init__(self, vae: torch.nn.Module) -> None:
        cfg = vae.config
        self.vae = vae.eval().requires_grad_(False)
        self.latent_channels = int(cfg.z_dim)
        patch = int(cfg.patch_size) if cfg.patch_size else 1
        self.spatial_factor = 2 ** (len(cfg.dim_mult) - 1) * patch
        self.temporal_factor = 2 ** sum(bool(d) for d in cfg.temperal_downsample)
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32)  # [C]
        std = torch.tensor(cfg.latents_std, dtype=torch.float32)  # [C]
        if mean.shape != (self.latent_channels,) or std.shape != (self.latent_channels,):
            raise ValueError(
                f"WanVAECodec: config latents_mean/latents_std must have z_dim = {self.latent_channels} entries, "
                f"got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        self._mean = mean.view(1, -1, 1, 1, 1)  # [1, C, 1, 1, 1]
        self._std = std.view(1, -1, 1, 1, 1)  # [1, C, 1, 1, 1]
        self._encoder_convs = _count_causal_convs(vae.encoder)
        self._decoder_convs = _count_causal_convs(vae.decoder)

    @classmethod
    def from_pretrained(
        cls, local_dir: str | os.PathLike, torch_dtype: torch.dtype | None = None, subfolder: str | None = None
    ) -> "WanVAECodec":
        """Load ``AutoencoderKLWan`` from a local diffusers directory (``subfolder="vae"`` for a pipeline root)."""
        from diffusers import AutoencoderKLWan

        path = os.path.join(os.fspath(local_dir), subfolder) if subfolder else os.fspath(local_dir)
        require_local_dir(path, "WanVAECodec.from_pretrained", ("config.json",), _WEIGHTS)
        vae = AutoencoderKLWan.from_pretrained(path, torch_dtype=torch_dtype, local_files_only=True)
        return cls(vae)

    def __repr__(self) -> str:
        return (
            f"WanVAECodec(z_dim={self.latent_channels}, spatial_factor={self.spatial_factor}, "
            f"temporal_factor={self.temporal_factor}, dtype={self.dtype})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    # -- normalization and layout (pure tensor maps) -------------------------------
    def _to_vae_pixels(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` in [0, 1] -> ``[B, 3, T, H, W]`` in [-1, 1] on the VAE's device/dtype."""
        x = video.to(self.device, torch.float32).permute(0, 2, 1, 3, 4) * 2.0 - 1.0  # [B, 3, T, H, W]
        return x.to(self.dtype)

    def _from_vae_pixels(self, x: Tensor) -> Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> ``[B, T, 3, H, W]`` float32 in [0, 1]."""
        return ((x.float().clamp(-1.0, 1.0) + 1.0) * 0.5).permute(0, 2, 1, 3, 4)  # [B, T, 3, H, W]

    def _normalize(self, posterior_params: Tensor) -> Tensor:
        """Encoder output ``[B, 2C, F, H, W]`` (mean | logvar) -> normalized latents ``[B, F, C, H, W]`` float32."""
        z = posterior_params.float()[:, : self.latent_channels]  # [B, C, F, H, W] posterior mean
        z = (z - self._mean.to(z.device)) / self._std.to(z.device)
        return z.permute(0, 2, 1, 3, 4)  # [B, F, C, H, W]

    def _denormalize(self, latents: Tensor) -> Tensor:
        """Normalized ``[B, F, C, H, W]`` -> VAE latents ``[B, C, F, H, W]`` on the VAE's device/dtype."""
        z = latents.to(self.device, torch.float32).permute(0, 2, 1, 3, 4)  # [B, C, F, H, W]
        z = z * self._std.to(z.device) + self._mean.to(z.device)
        return z.to(self.dtype)

    # -- Codec protocol ------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` in [0, 1] -> normalized latents ``[B, F, C, H/s, W/s]`` (posterior mean)."""
        check_pixel_video(video, self.spatial_factor, self.temporal_factor, "WanVAECodec.encode: video")
        params = self.vae.encode(self._to_vae_pixels(video)).latent_dist.parameters  # [B, 2C, F, H, W]
        return self._normalize(params)

    def encode_image(self, image: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, C, H/s, W/s]`` (the image as a one-frame video)."""
        check_image(image, "WanVAECodec.encode_image: image")
        return self.encode(image[:, None])[:, 0]

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalized ``[B, F, C, H, W]`` -> ``[B, T, 3, H*s, W*s]`` in [0, 1], ``T = 1 + (F-1)*temporal_factor``."""
        check_latents(latents, self.latent_channels, "WanVAECodec.decode: latents")
        return self._from_vae_pixels(self.vae.decode(self._denormalize(latents)).sample)

    def stream_decoder(self) -> "WanVAEStreamDecoder":
        """A fresh decoder that carries the causal conv cache from one latent frame to the next."""
        return WanVAEStreamDecoder(self)

    def stream_encoder(self) -> "WanVAEStreamEncoder":
        """A fresh encoder taking pixel frame 0 alone, then ``temporal_factor`` pixel frames per call."""
        return WanVAEStreamEncoder(self)


class WanVAEStreamDecoder:
    """Decodes latent frame by latent frame; outputs concatenate to ``WanVAECodec.decode`` (no seams).

    Latent frame 0 gives 1 pixel frame, each later one ``temporal_factor``.
    """

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        self.frames_seen = 0
        self._cache: list = [None] * codec._decoder_convs

    @torch.no_grad()
    def decode_next(self, latent_frame: Tensor) -> Tensor:
        """``[B, C, H, W]`` normalized latent frame -> ``[B, t, 3, H*s, W*s]`` in [0, 1]."""
        codec = self.codec
        check_latents(latent_frame, codec.latent_channels, "WanVAEStreamDecoder.decode_next: latent_frame", dim=4)
        z = codec._denormalize(latent_frame[:, None])  # [B, C, 1, H, W]
        x = codec.vae.post_quant_conv(z)  # 1x1x1 conv: per frame, no temporal state
        out = codec.vae.decoder(x, feat_cache=self._cache, feat_idx=[0], first_chunk=self.frames_seen == 0)
        if codec.vae.config.patch_size is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=codec.vae.config.patch_size)
        self.frames_seen += 1
        return codec._from_vae_pixels(out)  # [B, t, 3, H_px, W_px]


class WanVAEStreamEncoder:
    """Encodes pixel frame 0, then ``temporal_factor`` pixel frames per call; stacks to ``WanVAECodec.encode``."""

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        self.frames_seen = 0
        self._cache: list = [None] * codec._encoder_convs

    @torch.no_grad()
    def encode_next(self, frames: Tensor) -> Tensor:
        """``[B, t, 3, H, W]`` in [0, 1] (``t = 1`` first, then ``temporal_factor``) -> ``[B, C, H/s, W/s]``."""
        codec = self.codec
        name = "WanVAEStreamEncoder.encode_next: frames"
        check_stream_chunk(frames, self.frames_seen, codec.spatial_factor, codec.temporal_factor, name)
        x = codec._to_vae_pixels(frames)  # [B, 3, t, H, W]
        if codec.vae.config.patch_size is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import patchify

            x = patchify(x, patch_size=codec.vae.config.patch_size)
        out = codec.vae.encoder(x, feat_cache=self._cache, feat_idx=[0])
        params = codec.vae.quant_conv(out)  # [B, 2C, 1, H, W]
        self.frames_seen += 1
        return codec._normalize(params)[:, 0]  # [B, C, H, W]
