"""``ControlEncoder``: a ``rldiff.types.Control`` -> the conditioning TensorDict of the causal model.

Output (``tensordict.TensorDict``, batch ``[B]``), as agreed in INTERFACES:

- ``"text"``   ``[B, L, D_text]``: ``control.text_embeds`` if set, else the text
  encoder's embeddings of ``control.prompt``; shared by all frames.
- ``"image"``  ``[B, L_img, D_img]`` (optional): ``control.image_embeds`` if set,
  else the image encoder's features of ``control.reference``; absent when there
  is neither an image encoder nor precomputed image embeddings (configure no
  image encoder, and give no ``image_embeds``, for a model without an image
  projection).
- ``"frames"`` ``[B, F, M + C + C, H, W]``, per latent frame, channels in order
  mask (``M``: ones on frame 0, zeros elsewhere) | reference latents (``C``:
  ``codec.encode_image(reference)`` on frame 0, standard-normal placeholders on
  frames > 0 drawn from ``generator``) | trajectory latents (``C``: codec
  latents of the Gaussian heatmap video of the trajectory).

Each piece is a small function here (:func:`frame0_mask`,
:func:`reference_frames`, :func:`trajectory_latents`) so other models can
assemble their own layout. Everything comes out float32 on the codec's device
(``PixelCodec``: the control's device).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff.types import Control

from policies.heatmaps import trajectory_heatmaps
from policies.latent_layout import pixel_frames_for

__all__ = ["ControlEncoder", "frame0_mask", "reference_frames", "trajectory_latents"]


def frame0_mask(batch_size: int, num_frames: int, channels: int, height: int, width: int, device=None) -> Tensor:
    """``[B, F, M, H, W]``: ones on latent frame 0, zeros on the rest."""
    mask = torch.zeros(batch_size, num_frames, channels, height, width, device=device)  # [B, F, M, H, W]
    mask[:, 0] = 1.0
    return mask


def reference_frames(ref_latents: Tensor, num_frames: int, generator: torch.Generator | None = None) -> Tensor:
    """``[B, C, H, W]`` reference latents -> ``[B, F, C, H, W]``: frame 0 the latents, frames > 0 N(0, I) noise.

    The placeholders are drawn with ``torch.randn`` from ``generator`` (on the
    generator's device, then moved to the latents' device), so the same seed
    gives the same placeholders.
    """
    b, c, h, w = ref_latents.shape
    gen_device = generator.device if generator is not None else ref_latents.device
    noise = torch.randn(b, num_frames - 1, c, h, w, generator=generator, device=gen_device)  # [B, F-1, C, H, W]
    return torch.cat([ref_latents.float()[:, None], noise.to(ref_latents.device)], dim=1)  # [B, F, C, H, W]


def trajectory_latents(codec, trajectory: Tensor, visibility: Tensor, height: int, width: int, sigma: float) -> Tensor:
    """Trajectory ``[B, T, K, 2]`` -> heatmap video ``[B, T, 3, H_px, W_px]`` -> codec latents ``[B, F, C, H, W]``.

    ``T`` must fit the codec's temporal layout (``T = 1 + (F - 1) * temporal_factor``).
    """
    video = trajectory_heatmaps(trajectory, visibility, height, width, sigma)  # [B, T, 3, H_px, W_px]
    return codec.encode(video).float()  # [B, F, C, H, W]


class ControlEncoder:
    """Encodes controls for a causal I2V model with trajectory control (AR-Drag's conditioning).

    Args:
        codec: a ``rldiff.protocols.Codec`` with ``encode_image`` (``PixelCodec``, ``WanVAECodec``).
        text_encoder: object with ``encode(prompts) -> [B, L, D]`` (``UMT5TextEncoder``,
            or ``HashTextEncoder`` in the CPU world). ``None``: every control must
            carry ``text_embeds``.
        image_encoder: object with ``encode(reference [B, 3, H, W]) -> [B, L_img, D_img]``
            (``CLIPImageEncoder``). ``None``: ``"image"`` is produced only from
            precomputed ``control.image_embeds``.
        mask_channels: ``M``, channels of the frame-0 mask (Wan I2V: 4).
        heatmap_sigma: standard deviation in pixels of the trajectory Gaussians.
    """

    def __init__(self, codec, text_encoder=None, image_encoder=None, mask_channels: int = 4, heatmap_sigma: float = 2.0) -> None:
        if not hasattr(codec, "encode_image"):
            raise TypeError(f"ControlEncoder: codec must have encode_image (PixelCodec, WanVAECodec), got {type(codec).__name__}")
        if int(mask_channels) != mask_channels or mask_channels < 0:
            raise ValueError(f"ControlEncoder: mask_channels must be an int >= 0, got {mask_channels!r}")
        if not heatmap_sigma > 0:
            raise ValueError(f"ControlEncoder: heatmap_sigma must be > 0 pixels, got {heatmap_sigma!r}")
        self.codec = codec
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.mask_channels = int(mask_channels)
        self.heatmap_sigma = float(heatmap_sigma)

    def __repr__(self) -> str:
        return (
            f"ControlEncoder(codec={self.codec!r}, text_encoder={self.text_encoder!r}, image_encoder={self.image_encoder!r}, "
            f"mask_channels={self.mask_channels}, heatmap_sigma={self.heatmap_sigma})"
        )

    @property
    def cond_channels(self) -> int:
        """``C_cond = M + 2 C`` channels of ``"frames"``."""
        return self.mask_channels + 2 * self.codec.latent_channels

    def pixel_frames(self, num_frames: int) -> int:
        """Pixel frames ``T`` a control needs for ``num_frames`` latent frames."""
        return pixel_frames_for(num_frames, self.codec.temporal_factor)

    def encode_text(self, control: Control) -> Tensor:
        """``[B, L, D_text]``: ``control.text_embeds`` if set, else the text encoder's embeddings."""
        if control.text_embeds is not None:
            return control.text_embeds.float()
        if self.text_encoder is None:
            raise ValueError(
                "ControlEncoder: control.text_embeds is None and no text_encoder was given; pass "
                "text_encoder=UMT5TextEncoder.from_pretrained(dir) (or HashTextEncoder() in the CPU world) "
                "or precompute control.text_embeds"
            )
        return self.text_encoder.encode(control.prompt)

    def encode_image(self, control: Control) -> Tensor | None:
        """``[B, L_img, D_img]`` or ``None``: precomputed ``control.image_embeds`` first, else the image encoder."""
        if control.image_embeds is not None:
            return control.image_embeds.float()
        if self.image_encoder is None:
            return None
        return self.image_encoder.encode(control.reference)

    def trajectory_video(self, control: Control) -> Tensor:
        """The trajectory's heatmap video ``[B, T, 3, H_px, W_px]`` at the reference's size (what the codec encodes)."""
        height, width = control.image_size
        return trajectory_heatmaps(control.trajectory, control.visibility, height, width, self.heatmap_sigma)

    def encode_frames(self, control: Control, num_frames: int, generator: torch.Generator | None = None) -> Tensor:
        """``[B, F, M + C + C, H, W]``: mask | reference latents (frame 0) / placeholders | trajectory latents."""
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"ControlEncoder.encode: num_frames must be a positive int, got {num_frames!r}")
        expected_t = self.pixel_frames(num_frames)
        if control.num_frames != expected_t:
            raise ValueError(
                f"ControlEncoder.encode: control.trajectory has T = {control.num_frames} pixel frames, but "
                f"num_frames = {num_frames} latent frames with the codec's temporal_factor = "
                f"{self.codec.temporal_factor} need T = 1 + (F - 1) * {self.codec.temporal_factor} = {expected_t}"
            )
        ref = self.codec.encode_image(control.reference).float()  # [B, C, H, W]
        b, _, h, w = ref.shape
        traj = self.codec.encode(self.trajectory_video(control)).float().to(ref.device)  # [B, F, C, H, W]
        mask = frame0_mask(b, num_frames, self.mask_channels, h, w, device=ref.device)  # [B, F, M, H, W]
        refs = reference_frames(ref, num_frames, generator)  # [B, F, C, H, W]
        return torch.cat([mask, refs, traj], dim=2)  # [B, F, M + 2C, H, W]

    def encode(self, control: Control, num_frames: int, generator: torch.Generator | None = None) -> TensorDict:
        """The conditioning TensorDict (batch ``[B]``) with ``"text"``, ``"frames"`` and optionally ``"image"``."""
        if not isinstance(control, Control):
            raise TypeError(f"ControlEncoder.encode: control must be a rldiff.types.Control, got {type(control).__name__}")
        frames = self.encode_frames(control, num_frames, generator)  # [B, F, C_cond, H, W]
        device = frames.device
        out = {"frames": frames, "text": self.encode_text(control).to(device)}  # text [B, L, D_text]
        image = self.encode_image(control)
        if image is not None:
            out["image"] = image.to(device)  # [B, L_img, D_img]
        b = control.batch_size
        for key, value in out.items():
            if value.shape[0] != b:
                raise ValueError(f"ControlEncoder.encode: {key!r} has batch {value.shape[0]}, expected B = {b}")
        return TensorDict(out, batch_size=[b], device=device)
