"""The original Wan key layout <-> diffusers ``WanTransformer3DModel`` keys, and reading public checkpoints.

Wan 2.1's own code (and the causal students built on it: Self-Forcing,
LongLive, CausVid) names the transformer's weights ``blocks.3.self_attn.q.weight``,
``head.head.weight``, ...; diffusers names them ``blocks.3.attn1.to_q.weight``,
``proj_out.weight``, ... The renames are those of diffusers'
``scripts/convert_wan_to_diffusers.py`` (written here as an exact
module-path table rather than chained substring replaces); note the swap of
the block norms: Wan's ``norm3`` (the cross-attention norm) is diffusers'
``norm2``, and Wan's ``norm2`` (the feed-forward norm, no weights) is diffusers'
``norm3``.

Checkpoints are read as state dicts only: ``.safetensors``, or ``torch.load(...,
weights_only=True)`` for ``.pt``/``.pth``/``.bin`` (never full unpickling). The
tensors may sit under a sub-dict (``generator_ema``, ``generator``, ``model``,
``state_dict``, ...) and under key prefixes (``model.``, ``module.``,
``_orig_mod.``, FSDP's ``_fsdp_wrapped_module.``); :func:`read_wan_state_dict`
strips both and says what it did.
"""

from __future__ import annotations

import os
import re

import torch
from torch import Tensor

__all__ = [
    "TOP_LEVEL",
    "PER_BLOCK",
    "SUBDICTS",
    "wan_to_diffusers_key",
    "diffusers_to_wan_key",
    "convert_wan_state_dict",
    "strip_wrappers",
    "unwrap_checkpoint",
    "load_checkpoint_file",
    "read_wan_state_dict",
    "diffusers_config_from_wan",
]

# original Wan module path -> diffusers module path (parameter names after them are kept)
TOP_LEVEL = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}
PER_BLOCK = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm1": "norm1",
    "norm2": "norm3",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}
# where the public causal students keep their weights, in order of preference
SUBDICTS = {
    "wan": ("model", "state_dict", "module"),
    "self_forcing": ("generator_ema", "generator", "model", "state_dict"),
    "longlive": ("generator_ema", "generator", "model", "state_dict"),
    "causvid": ("generator_ema", "generator", "model", "state_dict"),
}
_PREFIXES = ("module.", "model.", "_orig_mod.", "diffusion_model.", "generator.")
_INFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(key: str, table: dict[str, str]) -> str | None:
    """``key`` with its longest module path in ``table`` renamed (parameter suffix kept), else None."""
    for old in sorted(table, key=len, reverse=True):
        if key == old or key.startswith(old + "."):
            return table[old] + key[len(old) :]
    return None


def wan_to_diffusers_key(key: str) -> str | None:
    """The diffusers name of an original Wan transformer key, or None when it has none."""
    m = _BLOCK.match(key)
    if m:
        rest = _rename(m.group(2), PER_BLOCK)
        return None if rest is None else f"blocks.{m.group(1)}.{rest}"
    return _rename(key, TOP_LEVEL)


def diffusers_to_wan_key(key: str) -> str | None:
    """The original Wan name of a diffusers ``WanTransformer3DModel`` key (the inverse table), or None."""
    m = _BLOCK.match(key)
    if m:
        rest = _rename(m.group(2), {v: k for k, v in PER_BLOCK.items()})
        return None if rest is None else f"blocks.{m.group(1)}.{rest}"
    return _rename(key, {v: k for k, v in TOP_LEVEL.items()})


def convert_wan_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Original-layout state dict -> (diffusers-layout state dict, original keys that map to nothing)."""
    out, unmatched = {}, []
    for key, value in state.items():
        new = wan_to_diffusers_key(key)
        if new is None:
            unmatched.append(key)
        else:
            out[new] = value
    return out, sorted(unmatched)


def strip_wrappers(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Remove training-wrapper prefixes/infixes from every key -> (state dict, what was stripped)."""
    out, seen = {}, set()
    for key, value in state.items():
        new = key
        for infix in _INFIXES:
            if infix in new:
                new, _ = new.replace(infix, ""), seen.add(infix)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if new.startswith(prefix):
                    new, stripped = new[len(prefix) :], True
                    seen.add(prefix)
        if new in out:
            raise ValueError(f"checkpoint keys collide after stripping wrapper prefixes: {key!r} -> {new!r}")
        out[new] = value
    return out, sorted(seen)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def unwrap_checkpoint(obj, fmt: str) -> tuple[dict[str, Tensor], str]:
    """The tensor state dict inside a loaded checkpoint -> (state dict, the sub-dict it came from or "")."""
    if fmt not in SUBDICTS:
        raise ValueError(f"format must be one of {sorted(SUBDICTS)}, got {fmt!r}")
    if _is_state_dict(obj):
        return obj, ""
    if isinstance(obj, dict):
        for name in SUBDICTS[fmt]:
            if name in obj and _is_state_dict(obj[name]):
                return obj[name], name
    keys = sorted(map(str, obj.keys()))[:20] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"no state dict of tensors found for format {fmt!r}: expected the tensors at the top level or under one of "
        f"{list(SUBDICTS[fmt])}; the checkpoint holds {keys}"
    )


def load_checkpoint_file(path) -> object:
    """Read ``path``: ``.safetensors`` via safetensors, else ``torch.load(weights_only=True)`` on CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or others) for anything beyond tensors and containers
        raise ValueError(
            f"{path!r} is not a plain state dict (torch.load with weights_only=True refused it: {err}); "
            "arbitrary pickled objects are never loaded: re-save the tensors with torch.save(model.state_dict())"
        ) from None


def read_wan_state_dict(path, fmt: str) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Original-layout transformer weights of a checkpoint file -> (state dict, notes on what was unwrapped)."""
    state, where = unwrap_checkpoint(load_checkpoint_file(path), fmt)
    state, stripped = strip_wrappers(state)
    return state, {"subdict": where, "stripped": stripped}


def diffusers_config_from_wan(state: dict[str, Tensor], num_heads: int | None = None) -> dict:
    """A ``WanTransformer3DModel`` config read off original-layout weights.

    The head count is not in the weights: ``num_heads`` defaults to ``dim // 128``
    (Wan 2.1's head size, 1.3B: 12 heads, 14B: 40).
    """
    required = ("patch_embedding.weight", "head.head.weight", "text_embedding.0.weight", "time_embedding.0.weight", "blocks.0.ffn.0.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"not an original-layout Wan transformer: missing {missing} (keys start with {sorted(state)[:5]})")
    patch = state["patch_embedding.weight"]  # [D, C_in, p_t, p_h, p_w]
    dim, in_channels, patch_size = patch.shape[0], patch.shape[1], tuple(patch.shape[2:])
    heads = dim // 128 if num_heads is None else int(num_heads)
    if heads < 1 or dim % heads:
        raise ValueError(f"num_heads={heads} must divide the model width {dim}")
    layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    out_channels = state["head.head.weight"].shape[0] // (patch_size[0] * patch_size[1] * patch_size[2])
    image = "img_emb.proj.1.weight" in state
    return dict(
        patch_size=patch_size,
        num_attention_heads=heads,
        attention_head_dim=dim // heads,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=state["text_embedding.0.weight"].shape[1],
        freq_dim=state["time_embedding.0.weight"].shape[1],
        ffn_dim=state["blocks.0.ffn.0.weight"].shape[0],
        num_layers=layers,
        cross_attn_norm=any(re.match(r"blocks\.\d+\.norm3\.", k) for k in state),
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=state["img_emb.proj.1.weight"].shape[1] if image else None,
        added_kv_proj_dim=dim if image else None,
        pos_embed_seq_len=state["img_emb.emb_pos"].shape[1] if "img_emb.emb_pos" in state else None,
    )
