"""Codec figures, measured side by side in one run: streaming vs full decode of the Wan VAE, PixelCodec cost.

Run: ``python benchmarks/bench_codecs.py [--base-dim 32] [--size 64] [--latent-frames 5]``

The Wan VAE has the Wan 2.1 architecture (dim_mult [1, 2, 4, 4], temporal
downsampling [False, True, True]) with random weights and a configurable
width (``--base-dim 96`` is the real one; slow on CPU). Prints the wall time
of ``decode`` vs the frame-by-frame ``stream_decoder``, their ratio, the
largest difference between the two outputs, and the time to the first
decoded frame (what a real-time player waits for).
"""

from __future__ import annotations

import argparse
import time

import torch

from policies.codecs import PixelCodec, WanVAECodec


def _timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dim", type=int, default=32, help="VAE width (Wan 2.1: 96)")
    parser.add_argument("--size", type=int, default=64, help="pixel height = width")
    parser.add_argument("--latent-frames", type=int, default=5, help="F latent frames to decode")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats per timing")
    args = parser.parse_args()

    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    codec = WanVAECodec(AutoencoderKLWan(base_dim=args.base_dim, z_dim=16))
    h = args.size // codec.spatial_factor
    z = torch.randn(1, args.latent_frames, codec.latent_channels, h, h)  # [B, F, C, H, W]

    def stream():
        dec = codec.stream_decoder()
        return torch.cat([dec.decode_next(z[:, i]) for i in range(z.shape[1])], dim=1)

    codec.decode(z[:, :2])  # warm-up
    full_s = stream_s = float("inf")
    for _ in range(args.repeats):  # interleaved, best of each, so load from other processes hits both alike
        t, full = _timed(lambda: codec.decode(z), 1)
        full_s = min(full_s, t)
        t, streamed = _timed(stream, 1)
        stream_s = min(stream_s, t)
    first_s, _ = _timed(lambda: codec.stream_decoder().decode_next(z[:, 0]), args.repeats)
    print(f"Wan VAE (base_dim {args.base_dim}), {args.size}x{args.size}, F = {args.latent_frames} -> T = {full.shape[1]}")
    print(f"  full decode      {full_s:8.3f} s")
    print(f"  streaming decode {stream_s:8.3f} s   ratio streaming / full = {stream_s / full_s:.3f}")
    print(f"  first frame      {first_s:8.3f} s   ratio first frame / full = {first_s / full_s:.3f}")
    print(f"  max |streaming - full| = {(streamed - full).abs().max().item():.3e}")

    pixel = PixelCodec(factor=8)
    video = torch.rand(1, full.shape[1], 3, args.size, args.size)
    enc_s, zp = _timed(lambda: pixel.encode(video), args.repeats)
    dec_s, back = _timed(lambda: pixel.decode(zp), args.repeats)
    print(f"PixelCodec(factor=8) on the same video: encode {enc_s * 1e3:.2f} ms, decode {dec_s * 1e3:.2f} ms, "
          f"decode ratio Wan / Pixel = {full_s / dec_s:.0f}, round-trip max error {(back - video).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
