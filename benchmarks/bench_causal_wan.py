"""CPU benchmark of CausalWan's cache and parallel paths (figures side by side in one run).

    python benchmarks/bench_causal_wan.py [--threads 2]

1. Per-frame time and KV-cache memory at frame 8 vs frame 64 with W = 7
   (flat), next to an unbounded window (grows).
2. KV cache vs recomputing the whole causal prefix at every step, F = 32.
3. Parallel log-prob recompute (one pass) vs frame-by-frame recompute, F = 16.

Model: a small random Wan config (4 layers, dim 128, 16x16 latents = 64
tokens per frame, C = 16), B = 2, N = 3 steps per frame.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from tensordict import TensorDict

from policies import CausalWan, KVCache

B, C, HW, N = 2, 16, 16, 3


def build(window: int) -> CausalWan:
    return CausalWan.tiny(
        latent_channels=C, num_layers=4, num_heads=4, head_dim=32, ffn_dim=512, text_dim=64, window=window, seed=0
    ).eval()


def make_cond(model: CausalWan, num_frames: int) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {"text": torch.randn(B, 16, 64, generator=g), "frames": torch.randn(B, num_frames, model.cond_channels, HW, HW, generator=g)},
        batch_size=[B],
    )


def snapshot(cache: KVCache) -> KVCache:
    """A copy of the cache's bookkeeping (tensors are never mutated, so sharing them is safe)."""
    return replace(cache, keys=[list(k) for k in cache.keys], values=[list(v) for v in cache.values], frames=list(cache.frames))


def step_time(model: CausalWan, cond: TensorDict, cache: KVCache, x: torch.Tensor) -> float:
    """Seconds for the N denoising steps of frame ``cache.next_frame`` (reads the cache only)."""
    start = time.perf_counter()
    for n in range(N):
        model.forward_frame(x, cache.next_frame, 1000.0 * (1 - n / N), cond, cache)
    return time.perf_counter() - start


def bench_flat(probes: tuple[int, int] = (8, 64), repeats: int = 7) -> None:
    print(f"1) per-frame time (N={N} steps, median of {repeats} interleaved runs) and KV-cache bytes at frame {probes[0]} vs {probes[1]}")
    for label, window in (("W = 7", 7), ("W = all", 10_000)):
        model = build(window)
        cond = make_cond(model, probes[1] + 1)
        cache = model.new_cache(cond)
        x = torch.randn(B, C, HW, HW)
        snaps = {}
        for m in range(probes[1]):
            if m in probes:
                snaps[m] = snapshot(cache)
            model.commit(x, m, cond, cache)
        snaps[probes[1]] = cache
        times = {p: [] for p in probes}
        for _ in range(repeats):
            for p in probes:
                times[p].append(step_time(model, cond, snaps[p], x))
        (t0, t1), (b0, b1) = (statistics.median(times[p]) for p in probes), (snaps[p].num_bytes() for p in probes)
        print(f"   {label:8s} frame {probes[0]}: {1e3 * t0:6.1f} ms, {b0 / 2**20:5.2f} MiB | frame {probes[1]}: {1e3 * t1:6.1f} ms, "
              f"{b1 / 2**20:5.2f} MiB | time ratio {t1 / t0:5.2f}, memory ratio {b1 / b0:5.2f}")  # fmt: skip


def side_by_side(runs: dict, repeats: int) -> dict:
    """Run each ``name: fn`` ``repeats`` times, interleaved; returns ``{name: (min seconds, last output)}``."""
    best, outs = {k: float("inf") for k in runs}, {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            outs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {k: (best[k], outs[k]) for k in runs}


def bench_cache_vs_prefix(num_frames: int = 32, repeats: int = 2) -> None:
    print(f"2) KV cache vs recomputing the causal prefix at every step, F = {num_frames}, W = 7 (best of {repeats})")
    model = build(7)
    cond = make_cond(model, num_frames)
    clean = torch.randn(B, num_frames, C, HW, HW)
    x = torch.randn(B, C, HW, HW)

    def cached():
        cache, vs = model.new_cache(cond), []
        for m in range(num_frames):
            for n in range(N):
                v = model.forward_frame(x, m, 1000.0 * (1 - n / N), cond, cache)
            vs.append(v)
            model.commit(clean[:, m], m, cond, cache)
        return torch.stack(vs)

    def prefix():
        vs = []
        for m in range(num_frames):
            for n in range(N):
                t = torch.full((B, 1), 1000.0 * (1 - n / N))
                v = model.forward_parallel(clean[:, :m], x[:, None], torch.tensor([m]), t, cond)[:, 0]
            vs.append(v)
        return torch.stack(vs)

    res = side_by_side({"cache": cached, "prefix": prefix}, repeats)
    (t_c, v_c), (t_p, v_p) = res["cache"], res["prefix"]
    print(f"   cache {t_c:6.2f} s | prefix recompute {t_p:6.2f} s | speed-up {t_p / t_c:5.2f}x | max |dv| {(v_c - v_p).abs().max().item():.1e}")


def bench_recompute(num_frames: int = 16, repeats: int = 5) -> None:
    print(f"3) recompute of one stochastic step per frame (GRPO log-probs), F = {num_frames}, W = 7 (best of {repeats})")
    model = build(7)
    cond = make_cond(model, num_frames)
    clean = torch.randn(B, num_frames, C, HW, HW)
    noisy = torch.randn(B, num_frames, C, HW, HW)
    ts = torch.rand(B, num_frames) * 1000

    def frame_by_frame():
        cache, vs = model.new_cache(cond), []
        for m in range(num_frames):
            vs.append(model.forward_frame(noisy[:, m], m, ts[:, m], cond, cache))
            model.commit(clean[:, m], m, cond, cache)
        return torch.stack(vs, 1)

    def parallel():
        return model.forward_parallel(clean[:, : num_frames - 1], noisy, torch.arange(num_frames), ts, cond)

    res = side_by_side({"seq": frame_by_frame, "par": parallel}, repeats)
    (t_s, v_s), (t_p, v_p) = res["seq"], res["par"]
    print(f"   frame-by-frame {t_s:6.3f} s | parallel {t_p:6.3f} s | speed-up {t_s / t_p:5.2f}x | max |dv| {(v_s - v_p).abs().max().item():.1e}")

    def parallel_backward():
        with torch.enable_grad():
            parallel().square().mean().backward()

    t_b, _ = side_by_side({"bwd": parallel_backward}, 2)["bwd"]
    print(f"   parallel forward + backward (what GRPO runs per update) {t_b:6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CausalWan CPU benchmark: B={B}, C={C}, {HW}x{HW} latents (64 tokens/frame), 4 layers, dim 128, N={N}, threads={args.threads}")
    with torch.no_grad():
        bench_flat()
        bench_cache_vs_prefix()
        bench_recompute()


if __name__ == "__main__":
    main()
