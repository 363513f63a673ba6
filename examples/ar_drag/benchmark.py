"""User benchmark folders (like AR-Drag's 206-segment benchmark): reference images, trajectories, prompts, optional real videos.

Layout::

    my_benchmark/
      benchmark.json        {"num_frames": T, "image_size": S (optional), "items": [ITEM, ...]}
      images/a.png          reference (first) frame, RGB or RGBA (alpha dropped), any size
      tracks/a.json         {"points": [[[x, y], ... K] ... T],
                             "visibility": [[true, ... K] ... T]   (optional: all visible),
                             "units": "normalized" | "pixels"     (optional: normalized)}
      videos/a.npy          optional real video: uint8 [T, H, W, 3] (.npy), or a folder of frame PNGs
                            (sorted by name); used for the FID / FVD reference statistics

    ITEM = {"id": "a", "image": "images/a.png", "prompt": "a red disc moves right",
            "tracks": "tracks/a.json", "video": "videos/a.npy" (optional)}

Paths are relative to the folder. Points are (x, y), x right, y down; normalized means
[0, 1] of the image side, pixels means of the reference image's own size. Items with
fewer tracks than the most are padded with invisible tracks. Images and videos are
resized to ``image_size`` (default: the first image's size; square). Every bad or missing
entry raises :class:`BenchmarkError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rldiff.types import Control

__all__ = ["Benchmark", "BenchmarkError", "load_benchmark", "write_benchmark"]


class BenchmarkError(ValueError):
    """A benchmark folder entry is missing or malformed (the message names the file and the field)."""


@dataclass
class Benchmark:
    """A loaded benchmark: ``control`` of B items, real ``videos [B', T, 3, S, S]`` of the items that have one (or None), ids."""

    control: Control
    videos: Tensor | None
    ids: list[str]
    name: str


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise BenchmarkError(f"{what}: file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchmarkError(f"{what}: {path} is not valid JSON ({e})") from e


def _image(path: Path, field: str) -> Tensor:
    import imageio.v2 as imageio

    if not path.is_file():
        raise BenchmarkError(f"{field}: file not found: {path}")
    try:
        array = np.asarray(imageio.imread(path))
    except Exception as e:  # imageio's format errors
        raise BenchmarkError(f"{field}: {path} is not a readable image ({type(e).__name__}: {e})") from e
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise BenchmarkError(f"{field}: {path} must be an RGB(A) image, got array shape {array.shape}")
    return torch.from_numpy(array[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)  # [3, H, W]


def _video(path: Path, field: str) -> Tensor:
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not frames:
            raise BenchmarkError(f"{field}: folder {path} holds no .png frames")
        return torch.stack([_image(p, field) for p in frames])  # [T, 3, H, W]
    if path.suffix != ".npy" or not path.is_file():
        raise BenchmarkError(f"{field}: expected a .npy file or a folder of PNG frames, got {path}" + ("" if path.exists() else " (not found)"))
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{field}: {path} is not a readable .npy array ({e})") from e
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise BenchmarkError(f"{field}: {path} must be uint8 [T, H, W, 3], got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.float32) / 255.0).permute(0, 3, 1, 2)  # [T, 3, H, W]


def _tracks(path: Path, num_frames: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    data = _read_json(path, "tracks")
    if not isinstance(data, dict) or "points" not in data:
        raise BenchmarkError(f"tracks: {path} must be an object with a 'points' field")
    try:
        points = torch.tensor(data["points"], dtype=torch.float32)  # [T, K, 2]
    except (TypeError, ValueError) as e:
        raise BenchmarkError(f"points: {path}: expected numbers [T][K][2] ({e})") from e
    if points.dim() != 3 or points.shape[0] != num_frames or points.shape[2] != 2 or points.shape[1] < 1:
        raise BenchmarkError(f"points: {path}: expected shape [T={num_frames}, K>=1, 2], got {list(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise BenchmarkError(f"points: {path} holds non-finite values")
    units = data.get("units", "normalized")
    if units == "pixels":
        points = points / torch.tensor([width, height], dtype=torch.float32)
    elif units != "normalized":
        raise BenchmarkError(f"units: {path}: expected 'normalized' or 'pixels', got {units!r}")
    if "visibility" in data:
        try:
            vis = torch.tensor(data["visibility"], dtype=torch.bool)  # [T, K]
        except (TypeError, ValueError) as e:
            raise BenchmarkError(f"visibility: {path}: expected booleans [T][K] ({e})") from e
        if vis.shape != points.shape[:2]:
            raise BenchmarkError(f"visibility: {path}: expected shape {list(points.shape[:2])}, got {list(vis.shape)}")
    else:
        vis = torch.ones(points.shape[:2], dtype=torch.bool)
    outside = vis & ((points < 0) | (points > 1)).any(-1)
    if bool(outside.any()):
        t, k = (int(i) for i in outside.nonzero()[0])
        raise BenchmarkError(f"points: {path}: visible point (frame {t}, track {k}) lies outside the image ({units}): {points[t, k].tolist()}")
    return points, vis


def _resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def load_benchmark(folder: str | os.PathLike) -> Benchmark:
    """Load a benchmark folder (layout in the module doc) into a ``Control`` and the real videos."""
    folder = Path(folder)
    spec = _read_json(folder / "benchmark.json", "benchmark.json")
    if not isinstance(spec, dict) or not isinstance(spec.get("items"), list) or not spec["items"]:
        raise BenchmarkError(f"items: {folder / 'benchmark.json'} must hold a non-empty 'items' list")
    if not isinstance(spec.get("num_frames"), int) or spec["num_frames"] < 2:
        raise BenchmarkError(f"num_frames: {folder / 'benchmark.json'} must give num_frames >= 2, got {spec.get('num_frames')!r}")
    num_frames, size = spec["num_frames"], spec.get("image_size")
    ids, refs, prompts, tracks, vis, videos = [], [], [], [], [], []
    for i, item in enumerate(spec["items"]):
        where = f"{folder / 'benchmark.json'} item {i}"
        for key in ("id", "image", "prompt", "tracks"):
            if not isinstance(item, dict) or not isinstance(item.get(key), str):
                raise BenchmarkError(f"{key}: {where} needs a string field {key!r}")
        image = _image(folder / item["image"], f"image ({where})")
        size = size or int(image.shape[-1])
        points, visible = _tracks(folder / item["tracks"], num_frames, *image.shape[-2:])
        ids.append(item["id"])
        refs.append(_resize(image[None], size)[0])
        prompts.append(item["prompt"])
        tracks.append(points)
        vis.append(visible)
        if "video" in item:
            video = _video(folder / item["video"], f"video ({where})")
            if video.shape[0] != num_frames:
                raise BenchmarkError(f"video: {folder / item['video']} has {video.shape[0]} frames, benchmark.json says num_frames={num_frames}")
            videos.append(_resize(video, size))
    if len(set(ids)) != len(ids):
        raise BenchmarkError(f"id: {folder / 'benchmark.json'} repeats ids {sorted({x for x in ids if ids.count(x) > 1})}")
    k = max(t.shape[1] for t in tracks)
    trajectory = torch.zeros(len(ids), num_frames, k, 2)  # [B, T, K, 2] padded tracks are invisible
    visibility = torch.zeros(len(ids), num_frames, k, dtype=torch.bool)  # [B, T, K]
    for b, (t, v) in enumerate(zip(tracks, vis)):
        trajectory[b, :, : t.shape[1]], visibility[b, :, : t.shape[1]] = t, v
    control = Control(trajectory=trajectory, visibility=visibility, reference=torch.stack(refs), prompt=prompts)
    return Benchmark(control, torch.stack(videos) if videos else None, ids, folder.name)


def write_benchmark(folder: str | os.PathLike, control: Control, videos: Tensor | None = None, ids: list[str] | None = None) -> Path:
    """Write ``control`` (and real ``videos [B, T, 3, H, W]`` in [0, 1]) as a benchmark folder (e.g. Sprites-Drag held-out)."""
    import imageio.v2 as imageio

    folder = Path(folder)
    for sub in ("images", "tracks") + (("videos",) if videos is not None else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    ids = ids or [f"{i:04d}" for i in range(control.batch_size)]
    items = []
    for b, name in enumerate(ids):
        image = (control.reference[b].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        imageio.imwrite(folder / "images" / f"{name}.png", image)
        track = {"points": control.trajectory[b].tolist(), "visibility": control.visibility[b].tolist(), "units": "normalized"}
        (folder / "tracks" / f"{name}.json").write_text(json.dumps(track))
        item = {"id": name, "image": f"images/{name}.png", "prompt": control.prompt[b], "tracks": f"tracks/{name}.json"}
        if videos is not None:
            np.save(folder / "videos" / f"{name}.npy", (videos[b].clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
            item["video"] = f"videos/{name}.npy"
        items.append(item)
    spec = {"num_frames": int(control.trajectory.shape[1]), "image_size": int(control.reference.shape[-1]), "items": items}
    (folder / "benchmark.json").write_text(json.dumps(spec, indent=1))
    return folder
