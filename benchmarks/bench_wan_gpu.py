"""GPU benchmark: a Wan-1.3B-shaped causal student (random weights), bf16, CUDA.

    python benchmarks/bench_wan_gpu.py [--frames 21] [--batch 1]

Shape of Wan2.1 1.3B I2V: dim 1536 (12 heads x 128), 30 layers, ffn 8960,
text 512 x 4096 (UMT5), CLIP image 257 x 1280, 36 + 16 trajectory input
channels, 480x832 px -> 60x104 latents (1560 tokens per latent frame).
Measures, side by side in one run, with N = 3 steps per frame and W = 7:
first-frame latency (cache creation + 3 steps; no VAE decode), per-frame time
(3 steps + commit) early and late in the video, the parallel recompute pass,
and peak GPU memory. Exits with a clear message when no CUDA device exists.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from tensordict import TensorDict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=21, help="latent frames (81 pixel frames with Wan's VAE)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_wan_gpu.py needs a CUDA device (torch.cuda.is_available() is False); run benchmarks/bench_causal_wan.py on CPU")

    from diffusers import WanTransformer3DModel

    from policies import CausalWan
    from policies.causal_wan_io import widen_patch_embedding

    device, dtype = torch.device("cuda"), torch.bfloat16
    cfg = dict(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, image_dim=1280, added_kv_proj_dim=1536, rope_max_seq_len=1024,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanTransformer3DModel(**cfg)
    transformer = transformer.to(dtype).eval()
    for name, module in transformer.named_modules():  # as from_pretrained(torch_dtype=bf16) does
        if any(part in transformer._keep_in_fp32_modules for part in name.split(".")):
            module.float()
    for name, param in transformer.named_parameters():
        if name.split(".")[-1] in transformer._keep_in_fp32_modules:
            param.data = param.data.float()
    widen_patch_embedding(transformer, 16)
    model = CausalWan(transformer, extra_in_channels=16, window=args.window)
    params = sum(p.numel() for p in model.parameters())
    b, f, n_steps, h, w = args.batch, args.frames, args.steps, 60, 104
    cond = TensorDict(
        {
            "text": torch.randn(b, 512, 4096, device=device),
            "image": torch.randn(b, 257, 1280, device=device),
            "frames": torch.randn(b, f, model.cond_channels, h, w, device=device),
        },
        batch_size=[b],
    )
    sigmas = [1.0 - i / n_steps for i in range(n_steps + 1)]
    print(f"Wan-1.3B-shaped CausalWan: {params / 1e9:.2f} B params, bf16, {torch.cuda.get_device_name()}, "
          f"B={b}, F={f}, N={n_steps}, W={args.window}, 60x104 latents (1560 tokens/frame)")  # fmt: skip

    def video() -> tuple[float, list[float]]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        cache = model.new_cache(cond)
        x = torch.randn(b, 16, h, w, device=device)
        first, per_frame = None, []
        for m in range(f):
            t0 = time.perf_counter()
            for n in range(n_steps):
                v = model.forward_frame(x, m, 1000.0 * sigmas[n], cond, cache)
                x = x + (sigmas[n + 1] - sigmas[n]) * v.float()
            torch.cuda.synchronize()
            if first is None:
                first = time.perf_counter() - start
            if m + 1 < f:
                model.commit(x, m, cond, cache)
            torch.cuda.synchronize()
            per_frame.append(time.perf_counter() - t0)
            x = torch.randn(b, 16, h, w, device=device)
        return first, per_frame

    with torch.no_grad():
        video()  # warm-up (kernels, allocator)
        torch.cuda.reset_peak_memory_stats()
        runs = [video() for _ in range(2)]
        peak = torch.cuda.max_memory_allocated() / 2**30
        first = min(r[0] for r in runs)
        early = statistics.median(t for r in runs for t in r[1][1:4])
        late = statistics.median(t for r in runs for t in r[1][-4:-1])
        print(f"first-frame latency (text/image K/V + {n_steps} steps): {first:.3f} s")
        print(f"per frame ({n_steps} steps + commit): frames 1-3 {1e3 * early:.1f} ms | last frames {1e3 * late:.1f} ms "
              f"| ratio {late / early:.2f} | {1 / late:.1f} latent frames/s (~{4 / late:.1f} px FPS with the 4x VAE)")  # fmt: skip
        print(f"peak GPU memory while streaming: {peak:.2f} GiB")

        clean = torch.randn(b, f - 1, 16, h, w, device=device)
        noisy = torch.randn(b, f, 16, h, w, device=device)
        ts = torch.rand(b, f, device=device) * 1000
        model.forward_parallel(clean, noisy, torch.arange(f), ts, cond)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.forward_parallel(clean, noisy, torch.arange(f), ts, cond)
        torch.cuda.synchronize()
        t_par = time.perf_counter() - start
        start = time.perf_counter()
        cache = model.new_cache(cond)
        for m in range(f):
            model.forward_frame(noisy[:, m], m, ts[:, m], cond, cache)
            if m + 1 < f:
                model.commit(clean[:, m], m, cond, cache)
        torch.cuda.synchronize()
        t_seq = time.perf_counter() - start
        print(f"recompute of one step per frame (F={f}): parallel {t_par:.3f} s | frame-by-frame {t_seq:.3f} s | speed-up {t_seq / t_par:.2f}x")


if __name__ == "__main__":
    main()
