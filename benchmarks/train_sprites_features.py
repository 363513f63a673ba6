"""Train the Sprites-Drag feature network (FID / FVD features of this world) and write its trunks as safetensors.

Supervised on train-split scenes (seeds from ``--seed``), never on the held-out split:
the frame trunk predicts the background kind, which (shape, pattern) sprites are present,
and the sprites' centres in that frame; the clip trunk predicts which path and speed kinds
are present and the sprites' centres in every frame (absent sprites masked; sprite slots
have no visible order, so points are scored under the better of the two slot orders). Features are the
``dim`` outputs of the projections, fed to linear heads.

Reproduce the bundled file (about 6 minutes on one CPU core):
    OMP_NUM_THREADS=1 python benchmarks/train_sprites_features.py \
        --out examples/pretrained/sprites_drag/features.safetensors
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from rewards.sprites_features import SpritesFeatureNet
from rldiff.checkpoint import save_tensors
from rldiff.data.sprites import BACKGROUNDS, PATHS, PATTERNS, SHAPES, SPEEDS, SpritesDrag


def batch(world: SpritesDrag, size: int, generator: torch.Generator):
    scene = world.scenes(size, generator)
    return world.render(scene), scene  # [B, T, 3, H, W]


def heads(dim: int, k: int, t: int) -> nn.ModuleDict:
    return nn.ModuleDict({
        "background": nn.Linear(dim, len(BACKGROUNDS)), "shape": nn.Linear(dim, len(SHAPES)), "pattern": nn.Linear(dim, len(PATTERNS) * len(SHAPES)),
        "frame_centers": nn.Linear(dim, 2 * k), "path": nn.Linear(dim, len(PATHS)), "speed": nn.Linear(dim, len(SPEEDS)),
        "clip_centers": nn.Linear(dim, 2 * k * t),
    })  # fmt: skip


def present_set(labels: torch.Tensor, present: torch.Tensor, classes: int) -> torch.Tensor:
    """Multi-hot ``[B, classes]`` of the labels ``[B, K]`` of present sprites (sprite slots have no visible order)."""
    return (torch.nn.functional.one_hot(labels, classes).float() * present[..., None]).amax(1)


def set_mse(pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Squared error ``[B]`` of predicted points ``[B, ..., K, 2]`` under the best of the K = 2 slot orders (either order for one sprite)."""
    def err(p):
        return (((p - target) ** 2).sum(-1) * present.view(present.shape[0], *([1] * (target.dim() - 3)), -1)).flatten(1).sum(1)

    return torch.minimum(err(pred), err(pred.flip(-2))) if pred.shape[-2] == 2 else err(pred)


def losses(net, head, video, scene, generator) -> dict[str, torch.Tensor]:
    b, t, k = video.shape[0], video.shape[1], scene.centers.shape[2]
    present = scene.present.float()  # [B, K]
    combos = scene.shape * len(PATTERNS) + scene.pattern  # [B, K] (shape, pattern) of each sprite
    frame_t = torch.randint(0, t, (b,), generator=generator)  # one frame per clip
    f = net.frames(video[torch.arange(b), frame_t])  # [B, D]
    c = net.clips(video)  # [B, D]
    fc = head["frame_centers"](f).reshape(b, k, 2)
    cc = head["clip_centers"](c).reshape(b, t, k, 2)
    target_f = scene.centers[torch.arange(b), frame_t]  # [B, K, 2]
    return {
        "background": F.cross_entropy(head["background"](f), scene.background),
        "shape": F.binary_cross_entropy_with_logits(head["shape"](f), present_set(scene.shape, present, len(SHAPES))),
        "pattern": F.binary_cross_entropy_with_logits(head["pattern"](f), present_set(combos, present, len(SHAPES) * len(PATTERNS))),
        "frame_centers": 50 * set_mse(fc, target_f, present).sum() / present.sum(),
        "path": F.binary_cross_entropy_with_logits(head["path"](c), present_set(scene.path, present, len(PATHS))),
        "speed": F.binary_cross_entropy_with_logits(head["speed"](c), present_set(scene.speed, present, len(SPEEDS))),
        "clip_centers": 50 * set_mse(cc, scene.centers, present).sum() / (present.sum() * t),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    world = SpritesDrag(image_size=32, num_frames=8)
    net = SpritesFeatureNet(dim=args.dim, num_frames=world.num_frames)
    head = heads(args.dim, world.max_sprites, world.num_frames)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for step in range(args.steps):
        video, scene = batch(world, args.batch, gen)
        parts = losses(net, head, video, scene, gen)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  " + "  ".join(f"{k} {v.item():.3f}" for k, v in parts.items()) + f"  {time.time() - start:.0f}s", flush=True)
    meta = {"config": json.dumps(net.config()), "trained": json.dumps({"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "split": "train"})}
    save_tensors(args.out, net.state_dict(), metadata=meta)
    print(f"wrote {args.out} ({sum(v.numel() for v in net.state_dict().values())} parameters)")


if __name__ == "__main__":
    main()
