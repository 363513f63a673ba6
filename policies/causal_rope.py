"""3-D rotary position embedding at absolute frame positions (float32), for ``CausalWan``.

diffusers' ``WanRotaryPosEmbed.forward`` always starts the time axis at 0; a
causal student must place frame ``m`` at time position ``m`` so that keys
cached at one frame keep their meaning at the next. These functions reuse the
frequency tables of a diffusers ``WanRotaryPosEmbed`` (same t/h/w split, same
interleaved real layout) and take explicit frame positions.

Adapted from diffusers 0.42 ``WanRotaryPosEmbed`` / ``WanAttnProcessor``: same
formula; changed: time positions are an argument, and the rotation runs in
float32 whatever the activations' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["RopeTable", "frame_rope", "apply_rope"]


class RopeTable:
    """Float64 copies of a ``WanRotaryPosEmbed``'s tables, kept out of the module.

    They are plain attributes, not buffers, so ``model.to(torch.bfloat16)``
    never rounds them; :meth:`on` moves them to a device once and remembers it.
    """

    def __init__(self, rope_module) -> None:
        self.split = (int(rope_module.t_dim), int(rope_module.h_dim), int(rope_module.w_dim))
        self.max_positions = int(rope_module.max_seq_len)
        self._tables = {"cpu": (rope_module.freqs_cos.detach().double().cpu(), rope_module.freqs_sin.detach().double().cpu())}

    def on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(cos, sin)`` tables ``[max_positions, head_dim]`` on ``device``."""
        key = str(device)
        if key not in self._tables:
            cos, sin = self._tables["cpu"]
            self._tables[key] = (cos.to(device), sin.to(device))
        return self._tables[key]


def frame_rope(table: RopeTable, frames: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rotary angles for ``frames [K]`` (absolute time positions) of ``height x width`` tokens each.

    Returns ``(cos, sin)``, each ``[K * height * width, head_dim / 2]`` float32,
    tokens in frame-major (f, h, w) order like the patch embedding's flatten.
    """
    if frames.dim() != 1:
        raise ValueError(f"frames must be a 1-D tensor of frame positions, got shape {tuple(frames.shape)}")
    if frames.numel() and (int(frames.min()) < 0 or int(frames.max()) >= table.max_positions):
        raise ValueError(
            f"frame positions must lie in [0, {table.max_positions}) (the model's rope_max_seq_len), "
            f"got range [{int(frames.min())}, {int(frames.max())}]"
        )
    if max(height, width) > table.max_positions:
        raise ValueError(f"token grid {height}x{width} exceeds rope_max_seq_len {table.max_positions}")
    cos_all, sin_all = table.on(frames.device)
    k = frames.shape[0]

    def grid(tab: Tensor) -> Tensor:
        t_tab, h_tab, w_tab = tab.split(table.split, dim=1)
        t = t_tab[frames].view(k, 1, 1, -1).expand(k, height, width, -1)  # [K, h, w, t_dim]
        h = h_tab[:height].view(1, height, 1, -1).expand(k, height, width, -1)  # [K, h, w, h_dim]
        w = w_tab[:width].view(1, 1, width, -1).expand(k, height, width, -1)  # [K, h, w, w_dim]
        return torch.cat([t, h, w], dim=-1).reshape(k * height * width, -1)  # [K*L, head_dim]

    cos = grid(cos_all)[:, 0::2].float()  # [K*L, head_dim/2] (the table repeats each angle twice)
    sin = grid(sin_all)[:, 1::2].float()  # [K*L, head_dim/2]
    return cos, sin


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of ``x [B, S, heads, head_dim]`` by angles ``[S, head_dim/2]``, in float32."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # [B, S, heads, head_dim/2] each
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)  # [B, S, heads, head_dim/2, 2]
    return out.flatten(-2).type_as(x)
