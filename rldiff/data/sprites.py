"""Sprites-Drag: a seeded synthetic world of textured sprites dragged along smooth paths.

Each scene is a static textured background (smooth colour field, stripes,
checkers or spots) and one or more textured sprites (discs, squares, rings;
shaded, striped, checkered or dotted) whose centres follow smooth paths
(lines, arcs, waves, Bezier curves) at varying speed (steady, ease-in-out,
accelerating, decelerating). A scene renders to an anti-aliased video
``[T, 3, H, W]`` in [0, 1] at any image size; its control holds the
ground-truth tracks (sprite centres), their visibility, the first frame as
reference image and a caption. It is the CPU training set, the env's control
source and the held-out evaluation set of the AR-Drag pipeline.

Scene parameters live in :class:`SpriteScene` (:mod:`rldiff.data.scene`), so a
scene can be re-rendered with another trajectory (``scene.with_centers``).
Everything renders vectorized in torch: 64 videos of 8 frames at 32x32 take
a few tens of milliseconds on one CPU core.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rldiff.data.paths import PATHS, SPEEDS
from rldiff.data.scene import HELDOUT_SEED, TRAIN_SEEDS, SpriteScene, draw_scenes
from rldiff.data.textures import BACKGROUNDS, PATTERNS, SHAPES, background_image, sprite_layer
from rldiff.types import Control

__all__ = [
    "BACKGROUNDS",
    "HELDOUT_SEED",
    "PATHS",
    "PATTERNS",
    "SHAPES",
    "SPEEDS",
    "SpriteScene",
    "SpritesDrag",
    "render",
    "scene_control",
]


def render(scene: SpriteScene, image_size: int) -> Tensor:
    """Render ``B`` scenes to videos ``[B, T, 3, H, W]`` in [0, 1] (``H = W = image_size``)."""
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    b, t, k, _ = scene.centers.shape
    bg = background_image(
        scene.background, scene.bg_colors, scene.bg_period, scene.bg_angle, scene.bg_phase, scene.bg_field, scene.blobs, image_size
    )  # [B, 3, H, W]
    video = bg[:, None].expand(b, t, 3, image_size, image_size)  # [B, T, 3, H, W]
    for j in range(k):  # sprite j over sprite j - 1
        alpha, rgb = sprite_layer(
            scene.centers[:, :, j],
            scene.radius[:, j],
            scene.angle[:, j],
            scene.shape[:, j],
            scene.pattern[:, j],
            scene.period[:, j],
            scene.colors[:, j],
            scene.present[:, j],
            image_size,
        )  # [B, T, 1, H, W], [B, T, 3, H, W]
        video = video + alpha * (rgb - video)
    return video.clamp(0.0, 1.0).contiguous()


def scene_control(scene: SpriteScene, video: Tensor) -> Control:
    """The control of rendered scenes: tracks = sprite centres, reference = first frame of ``video``."""
    if video.dim() != 5 or video.shape[:2] != scene.centers.shape[:2]:
        raise ValueError(f"video must be [B, T, 3, H, W] with (B, T) = {tuple(scene.centers.shape[:2])}, got {tuple(video.shape)}")
    return Control(
        trajectory=scene.centers.clone(),  # [B, T, K, 2]
        visibility=scene.visibility,  # [B, T, K]
        reference=video[:, 0].contiguous(),  # [B, 3, H, W]
        prompt=list(scene.captions),
    )


class SpritesDrag:
    """The Sprites-Drag data and control source (satisfies ``rldiff.protocols.ControlSource``).

    A split is an indexed set of scenes, each a pure function of its seed:
    ``"train"`` has ``2**62`` scenes (seeds ``0 .. 2**62-1``), ``"heldout"`` the
    ``num_heldout`` scenes of seeds ``2**62 + i``; the two share no seed, hence
    no scene. ``sample`` draws scene indices of the split uniformly from
    ``generator`` (with replacement), so the same generator state gives the
    same batch. ``heldout_*`` give the held-out list whatever the split.

    Args:
        image_size: H = W of the rendered frames in pixels (sprite radii 4-7 px at 32 px, scaled).
        num_frames: T pixel frames per video.
        min_sprites, max_sprites: sprites per scene; every control has K = max_sprites
            tracks, absent sprites with visibility False.
        split: "train" or "heldout".
        num_heldout: size of the held-out split.
    """

    def __init__(
        self,
        image_size: int = 32,
        num_frames: int = 8,
        min_sprites: int = 1,
        max_sprites: int = 2,
        split: str = "train",
        num_heldout: int = 64,
    ) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if not 1 <= min_sprites <= max_sprites:
            raise ValueError(f"need 1 <= min_sprites <= max_sprites, got min_sprites={min_sprites}, max_sprites={max_sprites}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        if num_heldout < 1:
            raise ValueError(f"num_heldout must be >= 1, got {num_heldout}")
        self.image_size, self.num_frames = image_size, num_frames
        self.min_sprites, self.max_sprites = min_sprites, max_sprites
        self.split, self.num_heldout = split, num_heldout

    def __len__(self) -> int:
        """Scenes in the split (train: 2**62)."""
        return self.num_heldout if self.split == "heldout" else TRAIN_SEEDS

    def _seed(self, index: int, split: str) -> int:
        size = self.num_heldout if split == "heldout" else TRAIN_SEEDS
        if not 0 <= index < size:
            raise IndexError(f"scene index must be in [0, {size}) for split {split!r}, got {index}")
        return HELDOUT_SEED + index if split == "heldout" else index

    def scenes_at(self, indices: list[int] | Tensor, split: str | None = None) -> SpriteScene:
        """The scenes of ``indices`` in ``split`` (default: this source's split)."""
        split = self.split if split is None else split
        indices = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
        if not indices:
            raise ValueError("indices must name at least one scene")
        seeds = [self._seed(i, split) for i in indices]
        return draw_scenes(seeds, self.num_frames, self.min_sprites, self.max_sprites)

    def scenes(self, batch_size: int, generator: torch.Generator | None = None) -> SpriteScene:
        """``batch_size`` scenes of the split, indices drawn uniformly from ``generator``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        high = self.num_heldout if self.split == "heldout" else TRAIN_SEEDS
        indices = torch.randint(0, high, (batch_size,), generator=generator)  # [B]
        return self.scenes_at(indices)

    def render(self, scene: SpriteScene) -> Tensor:
        """``[B, T, 3, H, W]`` videos of ``scene`` at this source's image size."""
        return render(scene, self.image_size)

    def control(self, scene: SpriteScene, video: Tensor | None = None) -> Control:
        """The control of ``scene`` (renders it unless its ``video`` is given)."""
        return scene_control(scene, self.render(scene) if video is None else video)

    def sample_videos(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Control]:
        """``(video [B, T, 3, H, W] in [0, 1], Control)``: training pairs (or held-out ones for that split)."""
        scene = self.scenes(batch_size, generator)
        video = self.render(scene)
        return video, scene_control(scene, video)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Control:
        """``B = batch_size`` controls, reproducible from ``generator``."""
        return self.sample_videos(batch_size, generator)[1]

    def item(self, index: int) -> tuple[Tensor, Control]:
        """Scene ``index`` of the split: ``(video [1, T, 3, H, W], Control of one row)``, deterministic."""
        scene = self.scenes_at([index])
        video = self.render(scene)
        return video, scene_control(scene, video)

    def heldout_scenes(self) -> SpriteScene:
        """All ``num_heldout`` held-out scenes, in order."""
        return self.scenes_at(list(range(self.num_heldout)), split="heldout")

    def heldout_videos(self) -> tuple[Tensor, Control]:
        """``(video [num_heldout, T, 3, H, W], Control)`` of the held-out split, in order."""
        scene = self.heldout_scenes()
        video = self.render(scene)
        return video, scene_control(scene, video)

    def heldout_controls(self) -> Control:
        """The held-out controls, in order."""
        return self.heldout_videos()[1]
