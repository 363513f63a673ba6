"""Convert a public causal Wan student (original Wan key layout) into a ``CausalWan`` directory.

    python -m policies.convert_checkpoint --format self_forcing --input self_forcing_dmd.pt --output students/self_forcing --i2v

Formats and the causal settings they get (rldiff's window does not count the
sink frames; Self-Forcing and LongLive count them inside ``local_attn_size``,
so rldiff ``(window, sink) = (local_attn_size - sink_size, sink_size)``):

==============  =====================================  ==============  ======  ====  ================
format          weights looked for (in order)          their (local,   window  sink  frames_per_block
                                                        sink)
==============  =====================================  ==============  ======  ====  ================
wan             top level, model, state_dict, module   bidirectional   7       0     1 (AR-Drag)
self_forcing    generator_ema, generator, model, ...   (-1, 0)         1024    0     3
longlive        generator_ema, generator, model, ...   (12, 3)         9       3     3
causvid         generator_ema, generator, model, ...   (-1, 0)         1024    0     3
==============  =====================================  ==============  ======  ====  ================

``local_attn_size = -1`` (global causal attention) becomes ``window = 1024``,
the RoPE table's length: every frame a Wan model can place. ``--window``,
``--sink`` and ``--frames-per-block`` override the table (in rldiff's
convention). ``--i2v`` grows a T2V student into an I2V + trajectory one
(:func:`policies.wan_grow.grow_to_i2v`, then trajectory channels) with the
pretrained output unchanged; an I2V checkpoint gets only the trajectory
channels. The output directory is diffusers' ``WanTransformer3DModel`` layout
plus ``causal_config.json``; ``CausalWan.from_pretrained(DIR)`` reads both.

Keys that map to nothing, and weights the model expects but the checkpoint
lacks, are errors that list them by name. Checkpoints are never unpickled
beyond plain tensors (see :mod:`policies.wan_keys`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import torch

from policies.wan_keys import convert_wan_state_dict, diffusers_config_from_wan, read_wan_state_dict

__all__ = ["FormatDefaults", "FORMATS", "rldiff_window", "build_transformer", "convert_checkpoint", "main"]

GLOBAL_WINDOW = 1024  # diffusers Wan's rope_max_seq_len: a window this long is global attention


@dataclass(frozen=True)
class FormatDefaults:
    """A format's causal settings in its own convention: ``local_attn_size`` (-1: global, None: not causal), ``sink_size``, block size."""

    local_attn_size: int | None
    sink_size: int
    frames_per_block: int


FORMATS = {
    "wan": FormatDefaults(local_attn_size=None, sink_size=0, frames_per_block=1),
    "self_forcing": FormatDefaults(local_attn_size=-1, sink_size=0, frames_per_block=3),
    "longlive": FormatDefaults(local_attn_size=12, sink_size=3, frames_per_block=3),
    "causvid": FormatDefaults(local_attn_size=-1, sink_size=0, frames_per_block=3),
}


def rldiff_window(local_attn_size: int | None, sink_size: int) -> tuple[int, int]:
    """Self-Forcing / LongLive ``(local_attn_size, sink_size)`` -> rldiff ``(window, sink)``.

    They count the sinks inside ``local_attn_size``; rldiff does not. ``-1`` (global) maps
    to a window of 1024 frames; ``None`` (a bidirectional base model) to AR-Drag's (7, 0).
    """
    if local_attn_size is None:
        return 7, 0
    if local_attn_size == -1:
        return GLOBAL_WINDOW, int(sink_size)
    if local_attn_size <= sink_size:
        raise ValueError(f"local_attn_size {local_attn_size} must exceed sink_size {sink_size} (it counts the sinks)")
    return int(local_attn_size) - int(sink_size), int(sink_size)


def build_transformer(state: dict, num_heads: int | None = None):
    """A float32 diffusers ``WanTransformer3DModel`` holding original-layout ``state``, loaded strictly.

    Raises ``ValueError`` naming the checkpoint keys that map to nothing and the
    model keys the checkpoint lacks (or whose shapes differ).
    """
    from diffusers import WanTransformer3DModel

    converted, unmatched = convert_wan_state_dict(state)
    config = diffusers_config_from_wan(state, num_heads=num_heads)
    with torch.random.fork_rng(devices=[]):
        transformer = WanTransformer3DModel(**config)  # random init, overwritten below (RoPE buffers kept)
    expected = transformer.state_dict()
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    shapes = sorted(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in converted.items() if k in expected and v.shape != expected[k].shape)
    problems = []
    if unmatched:
        problems.append(f"checkpoint keys with no diffusers counterpart: {unmatched}")
    if extra:
        problems.append(f"converted keys the model does not have: {extra}")
    if missing:
        problems.append(f"model weights missing from the checkpoint: {missing}")
    if shapes:
        problems.append(f"shape mismatches: {shapes}")
    if problems:
        raise ValueError("cannot convert the checkpoint:\n  " + "\n  ".join(problems))
    transformer.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return transformer


def convert_checkpoint(
    input_path,
    output_dir,
    fmt: str,
    i2v: bool = False,
    num_heads: int | None = None,
    window: int | None = None,
    sink: int | None = None,
    frames_per_block: int | None = None,
    mask_channels: int = 4,
    image_dim: int = 1280,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Convert ``input_path`` (format ``fmt``) and save a ``CausalWan`` directory at ``output_dir``; returns a report dict."""
    from policies.causal_wan import CausalWan
    from policies.causal_wan_io import widen_patch_embedding
    from policies.wan_grow import grow_to_i2v

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {fmt!r}")
    defaults = FORMATS[fmt]
    state, notes = read_wan_state_dict(input_path, fmt)
    transformer = build_transformer(state, num_heads=num_heads)
    extra = 0
    grown = False
    if i2v:
        c = transformer.config.out_channels
        if transformer.config.in_channels == c:
            transformer = grow_to_i2v(transformer, mask_channels=mask_channels, image_dim=image_dim)
            grown = True
        widen_patch_embedding(transformer, c)  # trajectory latents, zero-initialised
        extra = c
    win, snk = rldiff_window(defaults.local_attn_size, defaults.sink_size)
    window = win if window is None else int(window)
    sink = snk if sink is None else int(sink)
    frames_per_block = defaults.frames_per_block if frames_per_block is None else int(frames_per_block)
    model = CausalWan(transformer, extra_in_channels=extra, window=window, sink=sink, frames_per_block=frames_per_block)
    if dtype != torch.float32:
        model.transformer.to(dtype)  # after CausalWan read its RoPE tables in float64
    model.save_pretrained(output_dir)
    return {
        "format": fmt,
        "subdict": notes["subdict"],
        "stripped_prefixes": notes["stripped"],
        "tensors": len(state),
        "in_channels": int(transformer.config.in_channels),
        "extra_in_channels": extra,
        "grown_to_i2v": grown,
        "image_projection": transformer.config.image_dim is not None,
        "window": window,
        "sink": sink,
        "frames_per_block": frames_per_block,
        "output": str(output_dir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.convert_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="where the checkpoint comes from")
    parser.add_argument("--input", required=True, help="checkpoint file: .pt/.pth/.bin (state dicts only) or .safetensors")
    parser.add_argument("--output", required=True, help="directory to write (diffusers layout + causal_config.json)")
    parser.add_argument("--i2v", action="store_true", help="grow to I2V + trajectory (mask, reference, trajectory channels; CLIP projection)")
    parser.add_argument("--num-heads", type=int, default=None, help="attention heads (default: width // 128, Wan 2.1)")
    parser.add_argument("--window", type=int, default=None, help="rldiff window in frames, sinks not counted (default: per format)")
    parser.add_argument("--sink", type=int, default=None, help="sink frames (default: per format)")
    parser.add_argument("--frames-per-block", type=int, default=None, help="latent frames per block (default: per format)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="dtype of the saved weights")
    args = parser.parse_args(argv)
    report = convert_checkpoint(
        args.input,
        args.output,
        args.format,
        i2v=args.i2v,
        num_heads=args.num_heads,
        window=args.window,
        sink=args.sink,
        frames_per_block=args.frames_per_block,
        dtype=getattr(torch, args.dtype),
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
