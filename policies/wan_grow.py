"""Grow a text-to-video Wan transformer into an image-to-video one whose output is unchanged at start.

The public causal students (Self-Forcing, LongLive, CausVid) are T2V: 16 input
channels and no CLIP image projection. AR-Drag's student is I2V + trajectory:
noisy latents | mask | reference latents | trajectory latents, and a CLIP
image cross-attention. :func:`grow_to_i2v` adds the mask and reference input
channels (zero-initialised patch-embedding columns) and the image projection
with per-layer image keys/values (``add_v_proj`` zero-initialised, so the image
attention adds exactly 0); :func:`policies.causal_wan_io.widen_patch_embedding`
then adds the trajectory channels the same way. Before any training the grown
model's velocity equals the T2V model's whatever the new inputs hold.
"""

from __future__ import annotations

import torch

__all__ = ["grow_to_i2v"]


@torch.no_grad()
def grow_to_i2v(transformer, mask_channels: int = 4, image_dim: int = 1280, seed: int = 0):
    """A new ``WanTransformer3DModel`` with Wan I2V's inputs, equal to ``transformer`` at start.

    Args:
        transformer: a diffusers ``WanTransformer3DModel`` with ``in_channels == out_channels`` (T2V).
        mask_channels: ``M`` mask channels (Wan I2V: 4); ``C = out_channels`` reference channels follow.
        image_dim: CLIP feature width of the new image projection (ViT-H/14 penultimate: 1280); used
            only when the model has no image projection yet.
        seed: seed of the new image projection's random weights (the global RNG is untouched).

    Returns the grown model (``in_channels = C + M + C``), on ``transformer``'s device and dtype.
    """
    from diffusers import WanTransformer3DModel

    cfg = dict(transformer.config)
    c = int(cfg["out_channels"])
    if int(cfg["in_channels"]) != c:
        raise ValueError(
            f"grow_to_i2v expects a T2V model (in_channels == out_channels = {c}), got in_channels {cfg['in_channels']}; "
            "an I2V checkpoint already has its mask and reference channels"
        )
    if int(mask_channels) < 0:
        raise ValueError(f"mask_channels must be >= 0, got {mask_channels}")
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["in_channels"] = c + int(mask_channels) + c
    if cfg.get("image_dim") is None:
        cfg["image_dim"] = int(image_dim)
        cfg["added_kv_proj_dim"] = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    param = transformer.patch_embedding.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = WanTransformer3DModel(**cfg)
    grown = grown.to(device=param.device, dtype=param.dtype)
    state = {k: v for k, v in transformer.state_dict().items() if k != "patch_embedding.weight"}
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"grow_to_i2v: weights with no place in the grown model: {sorted(unexpected)}")
    new = ("patch_embedding.weight", "condition_embedder.image_embedder.", "attn2.add_k_proj.", "attn2.add_v_proj.", "attn2.norm_added_k.")
    unknown = [k for k in missing if not any(part in k for part in new)]
    if unknown:
        raise RuntimeError(f"grow_to_i2v: weights the grown model expects but the T2V model lacks: {sorted(unknown)}")
    grown.patch_embedding.weight.zero_()
    grown.patch_embedding.weight[:, :c].copy_(param)  # noisy latents keep their weights; mask and reference start at 0
    if "blocks.0.attn2.add_v_proj.weight" in missing:  # a new image cross-attention
        for block in grown.blocks:
            block.attn2.add_v_proj.weight.zero_()  # image values 0: the image attention adds exactly 0
            block.attn2.add_v_proj.bias.zero_()
    return grown
