"""Forward pieces of a diffusers ``WanTransformerBlock`` run on blocks of frames.

These functions take the diffusers submodules (``WanAttention``,
``WanTransformerBlock``) and use their weights as they are; nothing in diffusers
is patched. The block forward is split so that the caller decides what each
frame's self-attention sees (a KV cache, or other blocks of one parallel pass).

Adapted from diffusers 0.42 ``WanAttnProcessor`` and ``WanTransformerBlock.forward``:
same arithmetic; changed: self-attention context is supplied by the caller,
modulation is per frame block, q/k RMSNorm runs in float32, and cross-attention
keys/values can be computed once and reused.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F_
from torch import Tensor

from policies.causal_kv_cache import CrossKV
from policies.causal_rope import apply_rope

__all__ = ["rms_norm", "sdpa", "self_qkv", "cross_kv", "block_cross_kv", "cross_attention", "block_forward"]

SelfAttention = Callable[[Tensor, Tensor, Tensor], Tensor]  # (q, k, v) [B, S, heads, d] -> [B, S, heads * d]


def rms_norm(norm: torch.nn.Module, x: Tensor) -> Tensor:
    """Apply a ``torch.nn.RMSNorm`` in float32 and return ``x``'s dtype."""
    weight = None if norm.weight is None else norm.weight.float()
    eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
    return F_.rms_norm(x.float(), norm.normalized_shape, weight, eps).type_as(x)


def sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Unmasked attention: ``q [B, Sq, heads, d]``, ``k, v [B, Sk, heads, d]`` -> ``[B, Sq, heads * d]``."""
    out = F_.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # [B, heads, Sq, d]
    return out.transpose(1, 2).flatten(2).type_as(q)  # [B, Sq, heads * d]


def _heads(attn, x: Tensor) -> Tensor:
    return x.unflatten(2, (attn.heads, -1))  # [B, S, heads, d]


def self_qkv(attn, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Self-attention ``q, k, v [B, S, heads, d]`` of tokens ``x [B, S, D]``; q and k rotated by ``(cos, sin) [S, d/2]``."""
    if getattr(attn, "fused_projections", False):
        raise ValueError("CausalWan needs unfused attention projections; call transformer.unfuse_qkv_projections()")
    q = _heads(attn, rms_norm(attn.norm_q, attn.to_q(x)))
    k = _heads(attn, rms_norm(attn.norm_k, attn.to_k(x)))
    v = _heads(attn, attn.to_v(x))
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def cross_kv(attn, text: Tensor, image: Tensor | None) -> CrossKV:
    """Cross-attention keys/values of embedded ``text [B, L_txt, D]`` (and ``image [B, L_img, D]``) for one layer."""
    k = _heads(attn, rms_norm(attn.norm_k, attn.to_k(text)))  # [B, L_txt, heads, d]
    v = _heads(attn, attn.to_v(text))
    if attn.add_k_proj is None:
        if image is not None:
            raise ValueError("cond has 'image' embeddings but the model has no image cross-attention (image_dim unset)")
        return CrossKV(k, v)
    if image is None:
        raise ValueError("the model has an image cross-attention (image_dim set): cond must hold 'image' [B, L_img, D_img]")
    k_img = _heads(attn, rms_norm(attn.norm_added_k, attn.add_k_proj(image)))  # [B, L_img, heads, d]
    v_img = _heads(attn, attn.add_v_proj(image))
    return CrossKV(k, v, k_img, v_img)


def block_cross_kv(block, text: Tensor, image: Tensor | None) -> CrossKV:
    """:func:`cross_kv` of a ``WanTransformerBlock``'s cross-attention (``policies.CausalWan`` binds it to each block)."""
    return cross_kv(block.attn2, text, image)


def cross_attention(attn, x: Tensor, kv: CrossKV) -> Tensor:
    """Text (+ image) cross-attention of tokens ``x [B, S, D]`` -> ``[B, S, D]``."""
    q = _heads(attn, rms_norm(attn.norm_q, attn.to_q(x)))  # [B, S, heads, d]
    out = sdpa(q, kv.text_k, kv.text_v)  # [B, S, heads * d]
    if kv.image_k is not None:
        out = out + sdpa(q, kv.image_k, kv.image_v)
    return attn.to_out[1](attn.to_out[0](out))


def block_forward(block, h: Tensor, mod: Tensor, cos: Tensor, sin: Tensor, attend: SelfAttention, cross: CrossKV) -> Tensor:
    """One ``WanTransformerBlock`` on ``h [B, K, L, D]`` (K frame blocks of L tokens).

    ``mod [B, K, 6, D]`` is the time projection of each block's timestep;
    ``(cos, sin) [K * L, d/2]`` the rotary angles; ``attend(q, k, v)`` runs the
    self-attention of the ``K * L`` tokens with the context the caller decides.
    """
    b, k, l, d = h.shape
    table = block.scale_shift_table.unsqueeze(0)  # [1, 1, 6, D]
    shift, scale, gate, c_shift, c_scale, c_gate = (table + mod.float()).chunk(6, dim=2)  # each [B, K, 1, D]

    x = (block.norm1(h.float()) * (1 + scale) + shift).type_as(h)  # [B, K, L, D]
    q, key, value = self_qkv(block.attn1, x.reshape(b, k * l, d), cos, sin)  # [B, K*L, heads, d]
    a = block.attn1.to_out[1](block.attn1.to_out[0](attend(q, key, value)))  # [B, K*L, D]
    h = (h.float() + a.view(b, k, l, d) * gate).type_as(h)

    x = block.norm2(h.float()).type_as(h)
    h = h + cross_attention(block.attn2, x.reshape(b, k * l, d), cross).view(b, k, l, d)

    x = (block.norm3(h.float()) * (1 + c_scale) + c_shift).type_as(h)
    return (h.float() + block.ffn(x).float() * c_gate).type_as(h)  # [B, K, L, D]
