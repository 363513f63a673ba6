"""Do Frechet distances with the Sprites-Drag feature network mean something? A sanity table.

Reference: the ground-truth videos of the held-out split (``--clips`` scenes). Compared
sets, each of ``--clips`` train-split scenes (another draw of the world):
ground truth as drawn, then blurred, noised, and with wrong motion (every sprite's path
scaled towards its start point and re-rendered: the frames stay clean, only the motion
is wrong). FID should be near 0 for ground truth and rise with blur and noise; FVD should
rise with all three, and wrong motion should move FVD far more than FID.

    OMP_NUM_THREADS=1 python benchmarks/fid_fvd_sanity.py            # bundled features, 256 clips
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from examples.ar_drag.components import BUNDLE
from rewards.sprites_features import SpritesClipFeatures, SpritesFrameFeatures
from rldiff.data.sprites import SpritesDrag
from rldiff.metrics import frechet_distance_of


def blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of every frame ``[B, T, 3, H, W]`` (separable, reflect padding)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=video.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    flat = video.flatten(0, 2)[:, None]  # [B*T*3, 1, H, W]
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return flat.view_as(video)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--features", default=str(BUNDLE / "features.safetensors"))
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    frames_f, clips_f = SpritesFrameFeatures(args.features), SpritesClipFeatures(args.features)
    reference, _ = SpritesDrag(32, 8, split="heldout", num_heldout=args.clips).heldout_videos()  # [N, T, 3, H, W]
    world = SpritesDrag(32, 8)
    scene = world.scenes(args.clips, torch.Generator().manual_seed(args.seed))
    truth = world.render(scene)
    ref_frames, ref_clips = frames_f(reference.flatten(0, 1)), clips_f(reference)

    def motion(scale: float) -> torch.Tensor:
        start = scene.centers[:, :1]
        return world.render(scene.with_centers(start + scale * (scene.centers - start)))

    noise_gen = torch.Generator().manual_seed(args.seed + 1)
    rows = [("ground truth, another draw", truth)]
    rows += [(f"blur sigma {s} px", blur(truth, s)) for s in (0.5, 1.0, 2.0)]
    rows += [(f"noise std {s}", (truth + s * torch.randn(truth.shape, generator=noise_gen)).clamp(0, 1)) for s in (0.05, 0.1, 0.2)]
    rows += [(f"wrong motion: path x{s}", motion(s)) for s in (0.75, 0.5, 0.0)]
    print(f"reference: {args.clips} held-out ground-truth clips; each row: {args.clips} train-split clips; features {args.features.rsplit('/', 1)[-1]}\n")
    print("| compared set | FID (Sprites frames) | FVD (Sprites clips) |\n|---|---|---|")
    for name, video in rows:
        fid = frechet_distance_of(frames_f(video.flatten(0, 1)), ref_frames)
        fvd = frechet_distance_of(clips_f(video), ref_clips)
        print(f"| {name} | {fid:.3f} | {fvd:.3f} |", flush=True)


if __name__ == "__main__":
    main()
