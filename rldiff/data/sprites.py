"""Sprites-Drag: a seeded synthetic world of textured sprites dragged along smooth paths.

Each scene is a textured background and up to ``max_sprites`` textured sprites
(discs, squares, rings) whose centres follow smooth trajectories (lines, arcs,
sine curves, quadratic Bezier curves) with varying speed (constant, ease-in-out,
accelerating, decelerating). A scene renders to a video ``[T, 3, H, W]`` in
[0, 1]; its control holds the ground-truth tracks (the sprite centres), the
first frame as reference image and a caption. It is the CPU training set of
Step 1, the control source of the env and the held-out evaluation set.

Everything is torch, vectorized over the batch: 64 videos of 8 frames at
32x32 render in a few tens of milliseconds on one CPU core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rldiff.types import Control

__all__ = ["SpriteScene", "SpritesDrag", "render"]

SPRITE_COLORS = {
    "red": (0.9, 0.15, 0.1), "green": (0.15, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.9, 0.1),
    "cyan": (0.1, 0.85, 0.9), "magenta": (0.9, 0.15, 0.85), "orange": (1.0, 0.55, 0.05), "white": (0.97, 0.97, 0.97),
}  # fmt: skip
BACKGROUND_COLORS = {
    "grey": (0.45, 0.45, 0.45), "olive": (0.45, 0.45, 0.2), "teal": (0.15, 0.4, 0.45), "brown": (0.45, 0.3, 0.2),
    "navy": (0.15, 0.18, 0.4), "plum": (0.4, 0.22, 0.4), "sand": (0.7, 0.62, 0.45), "slate": (0.3, 0.35, 0.4),
}  # fmt: skip
SHAPES = ("disc", "square", "ring")
PATTERNS = ("plain", "striped", "dotted")
BACKGROUNDS = ("smooth", "striped", "checkered", "blobby")
PATHS = ("a straight line", "an arc", "a wave", "a curve")
SPEEDS = ("steadily", "smoothly", "faster and faster", "slower and slower")
HELDOUT_SEED = 1 << 40  # held-out scenes come from seeds >= this; train never seeds there


@dataclass
class SpriteScene:
    """Parameters of ``B`` scenes (all tensors have leading dim B).

    centers ``[B, T, K, 2]`` normalized (x, y); present ``[B, K]`` bool;
    shape/pattern/path/speed ``[B, K]`` long indices into SHAPES/PATTERNS/PATHS/SPEEDS;
    radius ``[B, K]`` normalized; color_a, color_b ``[B, K, 3]``; angle ``[B, K]`` pattern angle;
    background ``[B]`` index into BACKGROUNDS; bg_a, bg_b ``[B, 3]``; bg_freq, bg_angle, bg_phase ``[B]``;
    blobs ``[B, 4, 3]`` (x, y, radius) of the blobby background; captions: ``B`` strings.
    """

    centers: Tensor
    present: Tensor
    shape: Tensor
    pattern: Tensor
    path: Tensor
    speed: Tensor
    radius: Tensor
    color_a: Tensor
    color_b: Tensor
    angle: Tensor
    background: Tensor
    bg_a: Tensor
    bg_b: Tensor
    bg_freq: Tensor
    bg_angle: Tensor
    bg_phase: Tensor
    blobs: Tensor
    captions: list[str]


def _speed_profile(tau: Tensor, speed: Tensor) -> Tensor:
    """Arc-length fraction at times ``tau [T]`` for speed kinds ``speed [...]`` -> ``[..., T]``."""
    t = tau.expand(*speed.shape, -1)
    profiles = torch.stack([t, t * t * (3 - 2 * t), t * t, 1 - (1 - t) ** 2], dim=0)  # [4, ..., T]
    return torch.gather(profiles, 0, speed.unsqueeze(0).unsqueeze(-1).expand(1, *t.shape)).squeeze(0)


def _paths(num_frames: int, n: int, margin: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` smooth paths of ``num_frames`` points inside ``[margin, 1 - margin]``: (points [n, T, 2], path kind [n], speed kind [n])."""
    kind = torch.randint(0, len(PATHS), (n,), generator=generator)
    speed = torch.randint(0, len(SPEEDS), (n,), generator=generator)
    s = _speed_profile(torch.linspace(0, 1, num_frames), speed)  # [n, T]
    u = torch.rand(n, 8, generator=generator)  # [n, 8] raw parameters
    length = 0.2 + 0.25 * u[:, 0]  # travel distance (fraction of the image)
    heading = 2 * math.pi * u[:, 1]
    direction = torch.stack([heading.cos(), heading.sin()], dim=-1)  # [n, 2]
    normal = torch.stack([-heading.sin(), heading.cos()], dim=-1)  # [n, 2]
    along = s.unsqueeze(-1) * length[:, None, None] * direction[:, None]  # [n, T, 2]
    bend = (u[:, 2] - 0.5) * 0.5 * length  # sideways amplitude
    side = torch.zeros_like(s)  # [n, T]
    side = torch.where(kind[:, None] == 1, bend[:, None] * 4 * s * (1 - s), side)  # arc-like bow
    side = torch.where(kind[:, None] == 2, bend[:, None] * torch.sin(2 * math.pi * s * (1 + u[:, 3:4])), side)  # wave
    bez = 2 * s * (1 - s) * bend[:, None] * 2 + s * s * (u[:, 4:5] - 0.5) * 0.3  # quadratic Bezier offset
    side = torch.where(kind[:, None] == 3, bez, side)
    pts = along + side.unsqueeze(-1) * normal[:, None]  # [n, T, 2], relative to the start
    # fit into the box with an affine map (scale about the bbox centre + shift): keeps the path smooth
    lo, hi = pts.amin(dim=1), pts.amax(dim=1)  # [n, 2]
    room = (1 - 2 * margin)[:, None]  # [n, 1]
    scale = torch.clamp(room / (hi - lo).clamp_min(1e-6), max=1.0).amin(dim=1, keepdim=True)  # [n, 1]
    pts = (pts - lo[:, None]) * scale[:, None]
    extent = (hi - lo) * scale  # [n, 2]
    offset = margin[:, None] + torch.rand(n, 2, generator=generator) * (room - extent).clamp_min(0)
    return pts + offset[:, None], kind, speed


def _names(table: dict[str, tuple], idx: Tensor) -> list[str]:
    keys = list(table)
    return [keys[i] for i in idx.tolist()]


def sample_scenes(batch_size: int, num_frames: int, max_sprites: int, min_sprites: int, generator: torch.Generator | None) -> SpriteScene:
    """Draw ``batch_size`` random scenes from ``generator``."""
    b, k = batch_size, max_sprites
    count = torch.randint(min_sprites, max_sprites + 1, (b,), generator=generator)  # [B]
    present = torch.arange(k)[None] < count[:, None]  # [B, K]
    radius = (4.0 + 3.0 * torch.rand(b, k, generator=generator)) / 32.0  # [B, K] ~4-7 px at 32 px
    centers, path, speed = _paths(num_frames, b * k, (radius + 0.02).flatten(), generator)
    palette = torch.tensor(list(SPRITE_COLORS.values()))  # [8, 3]
    color_idx = torch.stack([torch.randperm(len(SPRITE_COLORS), generator=generator)[: 2 * k] for _ in range(b)])  # [B, 2K]
    bg_palette = torch.tensor(list(BACKGROUND_COLORS.values()))  # [8, 3]
    bg_idx = torch.stack([torch.randperm(len(BACKGROUND_COLORS), generator=generator)[:2] for _ in range(b)])  # [B, 2]
    scene = SpriteScene(
        centers=centers.view(b, k, num_frames, 2).transpose(1, 2).contiguous(),  # [B, T, K, 2]
        present=present,
        shape=torch.randint(0, len(SHAPES), (b, k), generator=generator),
        pattern=torch.randint(0, len(PATTERNS), (b, k), generator=generator),
        path=path.view(b, k),
        speed=speed.view(b, k),
        radius=radius,
        color_a=palette[color_idx[:, :k]],
        color_b=palette[color_idx[:, k:]] * 0.5,
        angle=math.pi * torch.rand(b, k, generator=generator),
        background=torch.randint(0, len(BACKGROUNDS), (b,), generator=generator),
        bg_a=bg_palette[bg_idx[:, 0]],
        bg_b=bg_palette[bg_idx[:, 1]],
        bg_freq=2.0 + 3.0 * torch.rand(b, generator=generator),
        bg_angle=math.pi * torch.rand(b, generator=generator),
        bg_phase=2 * math.pi * torch.rand(b, generator=generator),
        blobs=torch.rand(b, 4, 3, generator=generator),
        captions=[],
    )
    scene.captions = [caption(scene, i) for i in range(b)]
    return scene


def caption(scene: SpriteScene, i: int) -> str:
    """A short caption of scene ``i``, e.g. "a red striped disc moves along an arc over a teal checkered background"."""
    keys = list(SPRITE_COLORS)
    palette = torch.tensor(list(SPRITE_COLORS.values()))
    parts = []
    for k in range(scene.present.shape[1]):
        if not bool(scene.present[i, k]):
            continue
        color = keys[int((palette - scene.color_a[i, k]).abs().sum(-1).argmin())]
        pattern = PATTERNS[int(scene.pattern[i, k])]
        pattern = "" if pattern == "plain" else pattern + " "
        parts.append(f"a {color} {pattern}{SHAPES[int(scene.shape[i, k])]} moves {SPEEDS[int(scene.speed[i, k])]} along {PATHS[int(scene.path[i, k])]}")
    bg_keys, bg_palette = list(BACKGROUND_COLORS), torch.tensor(list(BACKGROUND_COLORS.values()))
    bg_color = bg_keys[int((bg_palette - scene.bg_a[i]).abs().sum(-1).argmin())]
    return " and ".join(parts) + f" over a {bg_color} {BACKGROUNDS[int(scene.background[i])]} background"


def _background(scene: SpriteScene, yy: Tensor, xx: Tensor) -> Tensor:
    """``[B, 3, H, W]`` static background textures."""
    f, a, p = scene.bg_freq[:, None, None], scene.bg_angle[:, None, None], scene.bg_phase[:, None, None]
    proj = xx * a.cos() + yy * a.sin()  # [B, H, W]
    smooth = 0.5 + 0.25 * (torch.sin(2 * math.pi * 0.7 * xx + p) + torch.cos(2 * math.pi * 0.9 * yy - p))
    stripes = 0.5 + 0.5 * torch.tanh(3 * torch.sin(2 * math.pi * f * proj + p))
    checker = 0.5 + 0.5 * torch.tanh(3 * torch.sin(math.pi * f * xx + p) * torch.sin(math.pi * f * yy + p))
    bx, by, br = (scene.blobs[..., i][:, :, None, None] for i in range(3))  # [B, 4, 1, 1]
    blobs = torch.exp(-((xx[:, None] - bx) ** 2 + (yy[:, None] - by) ** 2) / (2 * (0.08 + 0.12 * br) ** 2)).sum(1).clamp(max=1)
    mix = torch.stack([smooth, stripes, checker, blobs], dim=1)  # [B, 4, H, W]
    w = torch.gather(mix, 1, scene.background[:, None, None, None].expand(-1, 1, *mix.shape[-2:]))  # [B, 1, H, W]
    # fine static grain gives trackers texture to lock on
    grain = 0.04 * torch.sin(37.0 * xx + 11.0 * yy + p) * torch.cos(23.0 * yy - 7.0 * xx)
    base = scene.bg_a[:, :, None, None] * (1 - w) + scene.bg_b[:, :, None, None] * w
    return (base + grain[:, None]).clamp(0, 1)


def render(scene: SpriteScene, image_size: int) -> Tensor:
    """Render scenes to videos ``[B, T, 3, H, W]`` in [0, 1] (anti-aliased, textures move with the sprites)."""
    b, t, k, _ = scene.centers.shape
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size  # pixel centres, normalized
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # [H, W]
    yy, xx = yy.expand(b, -1, -1), xx.expand(b, -1, -1)  # [B, H, W]
    video = _background(scene, yy, xx).unsqueeze(1).repeat(1, t, 1, 1, 1)  # [B, T, 3, H, W]
    soft = 0.6 / image_size  # edge softness: ~0.6 px
    for j in range(k):
        c = scene.centers[:, :, j]  # [B, T, 2]
        dx = xx[:, None] - c[..., 0, None, None]  # [B, T, H, W]
        dy = yy[:, None] - c[..., 1, None, None]
        r = scene.radius[:, j, None, None, None]  # [B, 1, 1, 1]
        dist = torch.sqrt(dx**2 + dy**2 + 1e-12)
        sdf = torch.stack([dist - r, torch.maximum(dx.abs(), dy.abs()) - r, (dist - 0.65 * r).abs() - 0.35 * r], 1)  # [B, 3, T, H, W]
        sdf = torch.gather(sdf, 1, scene.shape[:, j, None, None, None, None].expand(-1, 1, t, image_size, image_size)).squeeze(1)
        alpha = torch.sigmoid(-sdf / soft) * scene.present[:, j, None, None, None]  # [B, T, H, W]
        ang = scene.angle[:, j, None, None, None]
        u = (dx * ang.cos() + dy * ang.sin()) / r
        v = (-dx * ang.sin() + dy * ang.cos()) / r
        stripes = 0.5 + 0.5 * torch.tanh(4 * torch.sin(1.5 * math.pi * u))
        dots = torch.sigmoid((0.3 - torch.sqrt((torch.remainder(u + 0.5, 1.0) - 0.5) ** 2 + (torch.remainder(v + 0.5, 1.0) - 0.5) ** 2)) * 20)
        shaded = (0.25 * (u + v) + 0.15 * torch.sin(3.0 * u) * torch.cos(3.0 * v) + 0.3).clamp(0, 1)  # lit from the top left
        shade = torch.stack([shaded, stripes, dots], 1)  # [B, 3, T, H, W]
        shade = torch.gather(shade, 1, scene.pattern[:, j, None, None, None, None].expand(-1, 1, t, image_size, image_size)).squeeze(1)
        ca, cb = scene.color_a[:, j, :, None, None, None], scene.color_b[:, j, :, None, None, None]  # [B, 3, 1, 1, 1]
        color = (ca * (1 - shade[:, None]) + cb * shade[:, None]).transpose(1, 2)  # [B, T, 3, H, W]
        video = video * (1 - alpha[:, :, None]) + color * alpha[:, :, None]
    return video.clamp(0, 1)


class SpritesDrag:
    """The Sprites-Drag data and control source (satisfies ``rldiff.protocols.ControlSource``).

    Args:
        image_size: H = W of the rendered frames in pixels.
        num_frames: T pixel frames per video.
        min_sprites, max_sprites: sprites per scene; K = max_sprites tracks
            (absent sprites have visibility False).
        split: "train" (scenes drawn from the caller's generator) or "heldout"
            (``sample`` cycles through the fixed held-out list).
        num_heldout: size of the held-out list, seeded from ``HELDOUT_SEED + i``.
    """

    def __init__(self, image_size: int = 32, num_frames: int = 8, min_sprites: int = 1, max_sprites: int = 2, split: str = "train", num_heldout: int = 64):
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if not 1 <= min_sprites <= max_sprites:
            raise ValueError(f"need 1 <= min_sprites <= max_sprites, got {min_sprites} and {max_sprites}")
        if image_size < 16 or num_frames < 2:
            raise ValueError(f"image_size must be >= 16 and num_frames >= 2, got {image_size} and {num_frames}")
        self.image_size, self.num_frames = image_size, num_frames
        self.min_sprites, self.max_sprites = min_sprites, max_sprites
        self.split, self.num_heldout = split, num_heldout
        self._cursor = 0

    def __len__(self) -> int:
        return self.num_heldout if self.split == "heldout" else 0

    def scenes(self, batch_size: int, generator: torch.Generator | None = None) -> SpriteScene:
        """Random training scenes."""
        return sample_scenes(batch_size, self.num_frames, self.max_sprites, self.min_sprites, generator)

    def heldout_scenes(self, indices: list[int] | None = None) -> SpriteScene:
        """Held-out scenes (all of them by default), each from its own fixed seed."""
        indices = list(range(self.num_heldout)) if indices is None else indices
        parts = [sample_scenes(1, self.num_frames, self.max_sprites, self.min_sprites, torch.Generator().manual_seed(HELDOUT_SEED + i)) for i in indices]
        return _cat_scenes(parts)

    def control(self, scene: SpriteScene, video: Tensor | None = None) -> Control:
        """The control of rendered scenes (tracks = sprite centres, reference = first frame)."""
        video = render(scene, self.image_size) if video is None else video
        vis = scene.present[:, None, :].expand(-1, self.num_frames, -1).clone()  # [B, T, K]
        return Control(trajectory=scene.centers.clone(), visibility=vis, reference=video[:, 0].contiguous(), prompt=list(scene.captions))

    def sample_videos(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Control]:
        """``(video [B, T, 3, H, W], Control)`` for training (train split) or the next held-out items."""
        scene = self.scenes(batch_size, generator) if self.split == "train" else self._next_heldout(batch_size)
        video = render(scene, self.image_size)
        return video, self.control(scene, video)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Control:
        return self.sample_videos(batch_size, generator)[1]

    def _next_heldout(self, batch_size: int) -> SpriteScene:
        idx = [(self._cursor + i) % self.num_heldout for i in range(batch_size)]
        self._cursor = (self._cursor + batch_size) % self.num_heldout
        return self.heldout_scenes(idx)

    def heldout_videos(self) -> tuple[Tensor, Control]:
        scene = self.heldout_scenes()
        video = render(scene, self.image_size)
        return video, self.control(scene, video)

    def heldout_controls(self) -> Control:
        return self.heldout_videos()[1]


def _cat_scenes(parts: list[SpriteScene]) -> SpriteScene:
    fields = {}
    for name in SpriteScene.__dataclass_fields__:
        values = [getattr(p, name) for p in parts]
        fields[name] = [c for v in values for c in v] if name == "captions" else torch.cat(values, 0)
    return SpriteScene(**fields)
