"""CausalWan's cache path against an independent reference: the stock diffusers forward with a block-causal mask.

The reference runs diffusers' own ``WanTransformer3DModel.forward`` (its RoPE,
its per-token timestep path, its ``WanAttnProcessor``) over the sequence
``[clean_0, ..., clean_{m-1}, noisy_m]``: RoPE then places every frame at its
absolute index by construction, a 2-D ``timestep`` gives the clean frames
t = 0 and the noisy frame its own t, and a processor subclass hands the
self-attention a token mask built from the window/sink rule. The only code the
two share is the diffusers weights, so agreement checks the cache layout,
eviction, absolute-frame RoPE and per-frame modulation of CausalWan
independently of its parallel path.
"""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from tensordict import TensorDict

from policies import CausalWan

B, C, HW, F = 2, 48, 8, 5
L = (HW // 2) ** 2  # tokens per frame with patch (1, 2, 2)


class MaskedSelfAttention(WanAttnProcessor):
    """The stock processor with a fixed self-attention mask (cross-attention unmasked)."""

    def __init__(self, holder: dict):
        super().__init__()
        self.holder = holder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is None:
            attention_mask = self.holder["mask"]
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def token_mask(num_frames: int, window: int, sink: int) -> torch.Tensor:
    """``[1, 1, S, S]`` bool, ``S = num_frames * L``: frame i sees j <= i with i - j < window or j < sink."""
    i = torch.arange(num_frames)[:, None]
    j = torch.arange(num_frames)[None, :]
    blocks = (j <= i) & ((i - j < window) | (j < sink))  # [F', F']
    return blocks.repeat_interleave(L, 0).repeat_interleave(L, 1)[None, None]


def max_gap_to_reference(model: CausalWan, ref_window: int, ref_sink: int) -> float:
    holder: dict = {}
    for block in model.transformer.blocks:
        block.attn1.set_processor(MaskedSelfAttention(holder))
    g = torch.Generator().manual_seed(1)
    cond = TensorDict(
        {
            "text": torch.randn(B, 5, model.transformer.config.text_dim, generator=g),  # [B, L_txt, D_text]
            "frames": torch.randn(B, F, model.cond_channels, HW, HW, generator=g),  # [B, F, C_cond, H, W]
        },
        batch_size=[B],
    )
    clean = torch.randn(B, F, C, HW, HW, generator=g)  # [B, F, C, H, W]
    noisy = torch.randn(B, F, C, HW, HW, generator=g)  # [B, F, C, H, W]
    t = torch.rand(B, F, generator=g) * 1000  # [B, F]
    worst = 0.0
    with torch.no_grad():
        cache = model.new_cache(cond)
        for m in range(F):
            v = model.forward_frame(noisy[:, m], m, t[:, m], cond, cache)  # [B, C, H, W]
            seq = torch.cat([clean[:, :m], noisy[:, m : m + 1]], dim=1)  # [B, m+1, C, H, W]
            inp = torch.cat([seq, cond["frames"][:, : m + 1]], dim=2).transpose(1, 2)  # [B, C_in, m+1, H, W]
            ts = torch.cat([torch.zeros(B, m), t[:, m : m + 1]], dim=1).repeat_interleave(L, dim=1)  # [B, (m+1) L]
            holder["mask"] = token_mask(m + 1, ref_window, ref_sink)
            ref = model.transformer(inp, ts, cond["text"], return_dict=False)[0][:, :, m]  # [B, C, H, W]
            worst = max(worst, (v - ref).abs().max().item())
            model.commit(clean[:, m], m, cond, cache)
    return worst


@pytest.mark.parametrize("window,sink", [(3, 0), (2, 2)])
def test_cache_path_equals_masked_stock_forward(window, sink):
    # F = 5 >= window + 2: frames are evicted (and sinks kept) before the last frames
    torch.manual_seed(0)
    model = CausalWan.tiny(window=window, sink=sink).eval()
    assert max_gap_to_reference(model, window, sink) <= 1e-5


def test_reference_is_sensitive_to_the_window():
    # negative control: the same comparison against a full causal mask must fail,
    # so the check above really sees the window (measured gap ~5e-2)
    torch.manual_seed(0)
    model = CausalWan.tiny(window=3, sink=0).eval()
    assert max_gap_to_reference(model, F, 0) > 1e-3
