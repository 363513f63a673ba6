"""Scene parameters of the Sprites-Drag world and how a scene is drawn from its seed.

Every scene is a pure function of one integer seed (and the world's
``num_frames``, ``min_sprites``, ``max_sprites``), so a split is a set of
seeds: the train split uses seeds in ``[0, 2**62)``, the held-out split
``2**62 + i``. They cannot share a scene by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from rldiff.data.paths import PATHS, SPEEDS, candidate_placements, choose_placements, draw_path
from rldiff.data.textures import BACKGROUNDS, PATTERNS, SHAPES, color_name, hsv_to_rgb

__all__ = ["HELDOUT_SEED", "TRAIN_SEEDS", "SpriteScene", "draw_scenes"]

TRAIN_SEEDS = 1 << 62  # train scene seeds are 0 .. TRAIN_SEEDS - 1
HELDOUT_SEED = 1 << 62  # held-out scene i has seed HELDOUT_SEED + i
_GRID = 3  # smooth backgrounds: a GxG grid of random values, upsampled
_BLOBS = 5  # spotted backgrounds: J discs


@dataclass
class SpriteScene:
    """Parameters of ``B`` scenes with ``K`` sprite slots over ``T`` frames (leading dim B everywhere).

    Background: ``background [B]`` long (index into BACKGROUNDS); ``bg_colors
    [B, 2, 3]``; ``bg_period, bg_angle [B]`` (stripes/checkers, normalized);
    ``bg_phase [B, 2]``; ``bg_field [B, G, G]`` (smooth); ``blobs [B, J, 3]``
    (x, y, radius; spotted).
    Sprites: ``present [B, K]`` bool (absent slots pad to K and are not drawn);
    ``shape, pattern [B, K]`` long (SHAPES, PATTERNS); ``radius [B, K]``
    normalized; ``angle [B, K]`` texture rotation; ``period [B, K]`` pattern
    period in radius units; ``colors [B, K, 2, 3]`` (body, pattern);
    ``path, speed [B, K]`` long (PATHS, SPEEDS, for the caption);
    ``centers [B, T, K, 2]`` normalized (x, y); sprite k is drawn over sprite k-1.
    ``captions``: B strings; ``seeds [B]`` long (the seed each scene came from, -1 if edited).
    """

    background: Tensor
    bg_colors: Tensor
    bg_period: Tensor
    bg_angle: Tensor
    bg_phase: Tensor
    bg_field: Tensor
    blobs: Tensor
    present: Tensor
    shape: Tensor
    pattern: Tensor
    radius: Tensor
    angle: Tensor
    period: Tensor
    colors: Tensor
    path: Tensor
    speed: Tensor
    centers: Tensor
    captions: list[str]
    seeds: Tensor

    def __post_init__(self) -> None:
        c = self.centers
        if not isinstance(c, Tensor) or c.dim() != 4 or c.shape[-1] != 2 or not torch.is_floating_point(c):
            got = (tuple(c.shape), c.dtype) if isinstance(c, Tensor) else type(c).__name__
            raise ValueError(f"SpriteScene.centers must be float [B, T, K, 2], got {got}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("SpriteScene.centers contains NaN or inf")
        b, _, k, _ = c.shape
        for f in fields(self):
            value = getattr(self, f.name)
            lead = len(value) if f.name == "captions" else value.shape[0]
            if lead != b:
                raise ValueError(f"SpriteScene.{f.name} must have leading dim B={b}, got {lead}")
        for name in ("present", "shape", "pattern", "radius", "angle", "period", "colors", "path", "speed"):
            if getattr(self, name).shape[1] != k:
                raise ValueError(f"SpriteScene.{name} must be [B, K={k}, ...], got {tuple(getattr(self, name).shape)}")

    @property
    def batch_size(self) -> int:
        return self.centers.shape[0]

    @property
    def num_frames(self) -> int:
        return self.centers.shape[1]

    @property
    def visibility(self) -> Tensor:
        """``[B, T, K]`` bool: the sprite exists and its centre lies in the frame."""
        inside = ((self.centers >= 0.0) & (self.centers <= 1.0)).all(dim=-1)  # [B, T, K]
        return inside & self.present[:, None, :]

    def index(self, rows: list[int] | Tensor) -> "SpriteScene":
        """Select scenes by batch index."""
        rows = [int(r) for r in (rows.tolist() if isinstance(rows, Tensor) else rows)]
        idx = torch.tensor(rows, dtype=torch.long)
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs = {n: ([v[r] for r in rows] if n == "captions" else v.index_select(0, idx)) for n, v in kwargs.items()}
        return SpriteScene(**kwargs)

    def with_centers(self, centers: Tensor, captions: list[str] | None = None) -> "SpriteScene":
        """The same scenes with other sprite centres ``[B, T', K, 2]`` (T' may differ), e.g. a user's drag.

        The captions still describe the drawn motion unless new ones are given;
        ``seeds`` become -1 (the scene no longer comes from its seed).
        """
        return replace(self, centers=centers, captions=list(self.captions if captions is None else captions), seeds=torch.full_like(self.seeds, -1))

    @staticmethod
    def cat(scenes: list["SpriteScene"]) -> "SpriteScene":
        """Concatenate along the batch axis (same T and K)."""
        if not scenes:
            raise ValueError("SpriteScene.cat needs at least one scene")
        kwargs = {}
        for f in fields(SpriteScene):
            values = [getattr(s, f.name) for s in scenes]
            kwargs[f.name] = [c for v in values for c in v] if f.name == "captions" else torch.cat(values, dim=0)
        return SpriteScene(**kwargs)


def _draw_one(seed: int, num_frames: int, min_sprites: int, max_sprites: int) -> dict:
    """All parameters of one scene from ``seed`` (numpy arrays, K = max_sprites slots)."""
    rng = np.random.default_rng(seed)
    k = max_sprites
    # background: one hue, two shades of moderate saturation
    bg_hue = rng.uniform()
    sat, val = rng.uniform(0.3, 0.65), rng.uniform(0.45, 0.8)
    bg_colors = np.stack([
        hsv_to_rgb(bg_hue, sat, val),
        hsv_to_rgb(bg_hue + rng.uniform(-0.05, 0.05), sat * rng.uniform(0.5, 1.0), val * rng.uniform(0.45, 0.7)),
    ])  # [2, 3]  # fmt: skip
    out = dict(
        background=rng.integers(len(BACKGROUNDS)),
        bg_colors=bg_colors,
        bg_period=rng.uniform(0.18, 0.35),
        bg_angle=rng.uniform(0.0, math.pi),
        bg_phase=rng.uniform(0.0, 2 * math.pi, size=2),
        bg_field=rng.uniform(size=(_GRID, _GRID)),
        blobs=np.concatenate([rng.uniform(size=(_BLOBS, 2)), rng.uniform(0.06, 0.16, size=(_BLOBS, 1))], axis=1),
    )
    # sprites: saturated bright hues away from the background hue and from each other
    count = int(rng.integers(min_sprites, max_sprites + 1))
    width = 0.6 / k
    hues = bg_hue + 0.2 + width * (rng.permutation(k) + rng.uniform(0.15, 0.85, size=k))  # [K]
    body = hsv_to_rgb(hues, rng.uniform(0.7, 1.0, size=k), rng.uniform(0.8, 1.0, size=k))  # [K, 3]
    mark = body * rng.uniform(0.25, 0.45, size=(k, 1))  # [K, 3] a dark shade of the body colour
    out.update(
        present=np.arange(k) < count,
        shape=rng.integers(len(SHAPES), size=k),
        pattern=rng.integers(len(PATTERNS), size=k),
        radius=rng.uniform(4.0, 7.0, size=k) / 32.0,
        angle=rng.uniform(0.0, math.pi, size=k),
        period=rng.uniform(0.7, 1.0, size=k),
        colors=np.stack([body, mark], axis=1),  # [K, 2, 3]
        path=rng.integers(len(PATHS), size=k),
        speed=rng.integers(len(SPEEDS), size=k),
        hues=hues,
        bg_hue=bg_hue,
    )
    centers = np.full((num_frames, k, 2), 0.5)  # [T, K, 2]; absent slots stay at the centre, invisible
    options = [
        candidate_placements(rng, draw_path(rng, num_frames, int(out["path"][j]), int(out["speed"][j])), float(out["radius"][j]))
        for j in range(count)
    ]  # count x [N, T, 2]
    for j, placed in enumerate(choose_placements(options, [float(r) for r in out["radius"][:count]])):
        centers[:, j] = placed
    out["centers"] = centers
    return out


def _caption(p: dict) -> str:
    """E.g. "a red striped disc moves smoothly along an arc over a green checkered background"."""
    parts = []
    for j in np.flatnonzero(p["present"]):
        pattern = PATTERNS[p["pattern"][j]]
        texture = "" if pattern == "shaded" else pattern + " "
        parts.append(f"a {color_name(p['hues'][j])} {texture}{SHAPES[p['shape'][j]]} moves {SPEEDS[p['speed'][j]]} along {PATHS[p['path'][j]]}")
    return " and ".join(parts) + f" over a {color_name(p['bg_hue'])} {BACKGROUNDS[p['background']]} background"


def draw_scenes(seeds: list[int], num_frames: int, min_sprites: int, max_sprites: int) -> SpriteScene:
    """The scenes of ``seeds`` (each a pure function of its seed), batched."""
    if not 1 <= min_sprites <= max_sprites:
        raise ValueError(f"need 1 <= min_sprites <= max_sprites, got min_sprites={min_sprites}, max_sprites={max_sprites}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    drawn = [_draw_one(int(s), num_frames, min_sprites, max_sprites) for s in seeds]

    def stack(name: str, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(np.stack([np.asarray(d[name]) for d in drawn]), dtype=dtype)

    long_names, bool_names = ("background", "shape", "pattern", "path", "speed"), ("present",)
    kwargs = {}
    for f in fields(SpriteScene):
        if f.name in ("captions", "seeds"):
            continue
        dtype = torch.long if f.name in long_names else torch.bool if f.name in bool_names else torch.float32
        kwargs[f.name] = stack(f.name, dtype)
    return SpriteScene(**kwargs, captions=[_caption(d) for d in drawn], seeds=torch.tensor([int(s) for s in seeds], dtype=torch.long))
