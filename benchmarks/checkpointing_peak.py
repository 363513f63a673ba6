"""Peak memory and time of one CausalWan recompute + backward on CPU, activation checkpointing off vs on.

    python benchmarks/checkpointing_peak.py [--layers 3] [--latent 8 12] [--dtype float32|bfloat16]

Full Wan 1.3B width (dim 1536, ffn 8960, 512 text + 257 image tokens), few
layers, a small latent; F = 21 frames of the AR-Drag schedule (20 clean history
frames + 21 noisy entries). Each setting runs in a fresh process; the figure is
the growth of the process's peak resident memory (``ru_maxrss``) from just
before the forward to the end of the backward, i.e. activations + gradients
(+ allocator slack); timings on a shared machine are noisy.
The memory model of ``benchmarks/memory_wan.py`` predicts the same difference.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def child(layers: int, latent: tuple[int, int], dtype: str, checkpointing: bool) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from memory_wan import WAN_13B, causal_wan
    from tensordict import TensorDict

    torch.set_num_threads(1)
    model = causal_wan(WAN_13B, layers)
    model.checkpointing = checkpointing
    f, (h, w) = 21, latent
    g = torch.Generator().manual_seed(0)
    cond = TensorDict({"text": torch.randn(1, 512, 4096, generator=g), "image": torch.randn(1, 257, 1280, generator=g),
                       "frames": torch.randn(1, f, model.cond_channels, h, w, generator=g)}, batch_size=[1])  # fmt: skip
    clean, noisy = torch.randn(1, f - 1, 16, h, w, generator=g), torch.randn(1, f, 16, h, w, generator=g)
    with torch.no_grad():  # warm-up on 2 frames (allocator, kernels), no gradients: the baseline holds only the weights
        model.forward_parallel(clean[:, :1], noisy[:, :2], torch.arange(2), torch.full((1, 2), 500.0), cond)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else torch.autocast("cpu", enabled=False)
    with ctx:
        v = model.forward_parallel(clean, noisy, torch.arange(f), torch.full((1, f), 500.0), cond)
    v.float().square().mean().backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grads = sum(p.numel() * 4 for p in model.parameters()) / 1e6
    return {"peak_growth_mb": (peak - before) / 1024, "grads_mb": grads, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--latent", type=int, nargs=2, default=[8, 12], help="latent H W (tokens per frame = H*W/4)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.layers, tuple(args.latent), args.dtype, args.child == "on")))
        return
    tpf = args.latent[0] * args.latent[1] // 4
    print(f"CausalWan, Wan 1.3B width, {args.layers} layers, latent {args.latent[0]}x{args.latent[1]} ({tpf} tokens/frame), F = 21 "
          f"(41 entries), {args.dtype}, one recompute + backward, 1 thread")  # fmt: skip
    results = {}
    for on in ("off", "on"):
        cmd = [sys.executable, __file__, "--layers", str(args.layers), "--latent", *map(str, args.latent), "--dtype", args.dtype, "--child", on]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[on] = json.loads(out.strip().splitlines()[-1])
        r = results[on]
        print(f"  checkpointing {on:3s}: peak RSS growth {r['peak_growth_mb']:8.1f} MB (of which fp32 gradients {r['grads_mb']:.0f} MB), {r['seconds']:6.2f} s")
    off, on = results["off"], results["on"]
    print(f"  checkpointing saves {100 * (1 - on['peak_growth_mb'] / off['peak_growth_mb']):.0f}% of the peak growth for "
          f"{100 * (on['seconds'] / off['seconds'] - 1):+.0f}% time")  # fmt: skip


if __name__ == "__main__":
    main()
