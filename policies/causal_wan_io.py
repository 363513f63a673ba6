"""Loading, saving and tiny configs of :class:`policies.CausalWan`.

Directory layout (diffusers' own, so any diffusers-format Wan transformer
directory loads): ``config.json`` + ``diffusion_pytorch_model.safetensors``
(or a sharded ``.safetensors.index.json``), plus ``causal_config.json`` with
``extra_in_channels``, ``window``, ``sink`` and ``frames_per_block`` once saved
by ``CausalWan`` or written by ``python -m policies.convert_checkpoint`` (an
older ``causal_config.json`` without ``frames_per_block`` means 1).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import torch
from torch import nn

from rldiff.checkpoint import load_json

__all__ = ["CAUSAL_CONFIG", "causal_config", "widen_patch_embedding", "load_wan_transformer", "load_causal_wan", "save_causal_wan", "tiny_causal_wan"]

CAUSAL_CONFIG = "causal_config.json"
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


@torch.no_grad()
def widen_patch_embedding(transformer, extra_in_channels: int) -> None:
    """Append ``extra_in_channels`` zero-initialized input channels to the patch embedding (in place).

    The pretrained output is unchanged whatever the new channels hold; the
    model config's ``in_channels`` is updated so ``save_pretrained`` round-trips.
    """
    if int(extra_in_channels) < 0:
        raise ValueError(f"extra_in_channels must be >= 0, got {extra_in_channels}")
    if extra_in_channels == 0:
        return
    old = transformer.patch_embedding
    new = nn.Conv3d(old.in_channels + extra_in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.weight.zero_()
    new.weight[:, : old.in_channels].copy_(old.weight)
    new.bias.copy_(old.bias)
    transformer.patch_embedding = new
    transformer.register_to_config(in_channels=old.in_channels + extra_in_channels)


def _check_dir(local_dir, who: str = "CausalWan.from_pretrained") -> str:
    path = os.fspath(local_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{who}: local_dir {path!r} does not exist (expected a diffusers Wan transformer directory: config.json + safetensors weights)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{who}: no config.json in {path!r}")
    if not any(os.path.isfile(os.path.join(path, w)) for w in _WEIGHTS):
        raise FileNotFoundError(f"{who}: no weights in {path!r} (expected one of {list(_WEIGHTS)}; only safetensors are read)")
    config = load_json(os.path.join(path, "config.json"))
    if not isinstance(config, dict):
        raise ValueError(f"{who}: {os.path.join(path, 'config.json')} must hold a JSON object (a diffusers config), got {type(config).__name__}")
    name = config.get("_class_name", "WanTransformer3DModel")
    if name != "WanTransformer3DModel":
        raise ValueError(f"{who}: {path!r} holds a {name}, expected a WanTransformer3DModel")
    return path


def _weight_keys(path: str) -> tuple[set[str], str]:
    """The tensor names stored in ``path``'s safetensors weights (headers only) and the file that lists them."""
    from safetensors import safe_open

    index = os.path.join(path, _WEIGHTS[1])
    if os.path.isfile(os.path.join(path, _WEIGHTS[0])):
        files, source = [os.path.join(path, _WEIGHTS[0])], os.path.join(path, _WEIGHTS[0])
    else:
        weight_map = load_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: expected a safetensors index with a 'weight_map' object")
        files, source = sorted({os.path.join(path, f) for f in weight_map.values()}), index
    keys: set[str] = set()
    for file in files:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{index}: lists weight file {file}, which does not exist")
        try:
            with safe_open(file, framework="pt") as f:
                keys.update(f.keys())
        except Exception as e:  # SafetensorError on a truncated or garbage file
            raise ValueError(f"{file}: expected a safetensors file, could not read it ({type(e).__name__}: {e})") from e
    return keys, source


def _show(keys: list[str], limit: int = 8) -> str:
    return str(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_wan_transformer(local_dir, torch_dtype: torch.dtype | None = None, who: str = "CausalWan.from_pretrained"):
    """A ``WanTransformer3DModel`` from a local diffusers directory, checked: ``config.json`` must fit the weights.

    diffusers only warns when the config asks for parameters the weights lack
    (they stay on the meta device and fail much later) or when the weights
    hold tensors the config has no place for; here both raise, naming the
    directory and the missing and unexpected keys. Truncated or garbage
    ``config.json``/safetensors files raise naming the file. ``who`` prefixes
    the messages (the public entry point).
    """
    from diffusers import WanTransformer3DModel

    path = _check_dir(local_dir, who)
    file_keys, source = _weight_keys(path)
    try:
        transformer = WanTransformer3DModel.from_pretrained(path, torch_dtype=torch_dtype, use_safetensors=True)
    except ValueError as e:  # e.g. diffusers' "Cannot load because <key> expected shape ..., but got ..."
        raise ValueError(f"{who}: the weights in {path!r} do not fit its config.json: {e}") from e
    model_keys = set(transformer.state_dict())
    missing, unexpected = sorted(model_keys - file_keys), sorted(file_keys - model_keys)
    if missing or unexpected:
        raise ValueError(
            f"{who}: {os.path.join(path, 'config.json')} does not match the weights in {source}: "
            f"{len(missing)} tensors the config needs are missing from the weights {_show(missing)}; "
            f"{len(unexpected)} tensors in the weights are unexpected for the config {_show(unexpected)}"
        )
    return transformer


def load_causal_wan(
    cls,
    local_dir,
    extra_in_channels: int | None = None,
    window: int | None = None,
    sink: int | None = None,
    torch_dtype: torch.dtype | None = None,
    frames_per_block: int | None = None,
):
    """Load a ``CausalWan`` from a local diffusers-format Wan transformer directory.

    A plain Wan directory (no ``causal_config.json``) gets ``extra_in_channels``
    (default 0) zero-initialized input channels. A directory saved by
    ``CausalWan.save_pretrained`` already has them; passing a different
    ``extra_in_channels`` is an error. ``window``/``sink``/``frames_per_block``
    default to the saved values, else 7, 0 and 1 (AR-Drag).
    """
    path = _check_dir(local_dir)
    saved = {}
    causal_config = os.path.join(path, CAUSAL_CONFIG)
    if os.path.isfile(causal_config):
        saved = load_json(causal_config)
        if not isinstance(saved, dict) or "extra_in_channels" not in saved:
            raise ValueError(f"CausalWan.from_pretrained: {causal_config} must be a JSON object with 'extra_in_channels', got {saved!r:.200}")
    transformer = load_wan_transformer(path, torch_dtype)
    if saved:
        if extra_in_channels is not None and int(extra_in_channels) != int(saved["extra_in_channels"]):
            raise ValueError(
                f"extra_in_channels={extra_in_channels} conflicts with {path!r}, saved with extra_in_channels={saved['extra_in_channels']}"
            )
        extra = int(saved["extra_in_channels"])
    else:
        extra = 0 if extra_in_channels is None else int(extra_in_channels)
        cond_channels = transformer.config.in_channels - transformer.config.out_channels
        if extra < 0:
            raise ValueError(f"extra_in_channels must be >= 0, got {extra}")
        widen_patch_embedding(transformer, extra)
        if cond_channels < 0:
            raise ValueError(f"{path!r}: in_channels {transformer.config.in_channels} < out_channels {transformer.config.out_channels}")
    window = saved.get("window", 7) if window is None else window
    sink = saved.get("sink", 0) if sink is None else sink
    frames_per_block = saved.get("frames_per_block", 1) if frames_per_block is None else frames_per_block
    return cls(transformer, extra_in_channels=extra, window=window, sink=sink, frames_per_block=frames_per_block)


def save_causal_wan(model, save_dir) -> None:
    """Save in diffusers layout plus ``causal_config.json``; each file lands via ``os.replace`` (atomic per file)."""
    save_dir = os.fspath(save_dir)
    parent = os.path.dirname(os.path.abspath(save_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".causal_wan_tmp_", dir=parent)
    try:
        model.transformer.save_pretrained(tmp, safe_serialization=True)
        with open(os.path.join(tmp, CAUSAL_CONFIG), "w") as f:
            json.dump(causal_config(model), f, indent=2)
        os.makedirs(save_dir, exist_ok=True)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(save_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def causal_config(model) -> dict:
    """What ``causal_config.json`` holds for ``model``: extra input channels, window, sink (in frames) and frames per block."""
    return {
        "extra_in_channels": model.extra_in_channels,
        "window": model.window,
        "sink": model.sink,
        "frames_per_block": getattr(model, "frames_per_block", 1),
    }


def tiny_config(
    latent_channels: int = 48,
    mask_channels: int = 4,
    num_layers: int = 2,
    num_heads: int = 2,
    head_dim: int = 32,
    ffn_dim: int = 128,
    text_dim: int = 32,
    freq_dim: int = 32,
    image_dim: int | None = None,
    rope_max_seq_len: int = 1024,
    patch: int = 2,
    cond_channels: int | None = None,
) -> dict:
    """A ``WanTransformer3DModel`` config with Wan I2V's channel layout (noisy | mask | reference), tiny dims.

    ``cond_channels`` overrides the conditioning width (default ``mask_channels +
    latent_channels``; a teacher with trajectory channels passes ``M + 2C``).
    ``patch`` is the spatial patch size: keep ``num_heads * head_dim`` above
    ``latent_channels * patch**2`` when the model must learn (a token has to
    carry its patch's values; at high noise the velocity is mostly the input).
    """
    dim = num_heads * head_dim
    cond = mask_channels + latent_channels if cond_channels is None else int(cond_channels)
    return dict(
        patch_size=(1, patch, patch),
        num_attention_heads=num_heads,
        attention_head_dim=head_dim,
        in_channels=latent_channels + cond,
        out_channels=latent_channels,
        text_dim=text_dim,
        freq_dim=freq_dim,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=image_dim,
        added_kv_proj_dim=dim if image_dim is not None else None,
        rope_max_seq_len=rope_max_seq_len,
    )


def tiny_causal_wan(cls, extra_in_channels: int | None = None, window: int = 7, sink: int = 0, seed: int = 0, frames_per_block: int = 1, **config):
    """A tiny random ``CausalWan`` (defaults: C = 48, 2 layers, dim 64, patch (1, 2, 2)).

    ``config`` goes to :func:`tiny_config`; ``extra_in_channels`` defaults to
    the latent channels (trajectory latents). Weights are drawn from ``seed``
    without touching the global RNG.
    """
    from diffusers import WanTransformer3DModel

    cfg = tiny_config(**config)
    extra = cfg["out_channels"] if extra_in_channels is None else int(extra_in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**cfg)
    widen_patch_embedding(transformer, extra)
    return cls(transformer, extra_in_channels=extra, window=window, sink=sink, frames_per_block=frames_per_block)
