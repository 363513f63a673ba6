"""User benchmark folders: a good folder round-trips (Sprites-Drag held-out written and read back), broken ones name file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from examples.ar_drag.benchmark import BenchmarkError, load_benchmark, write_benchmark
from rldiff.data.sprites import SpritesDrag


def sprites(n: int = 3):
    videos, control = SpritesDrag(image_size=32, num_frames=8, split="heldout").heldout_videos()
    return videos[:n], control.index(list(range(n)))


def test_written_sprites_benchmark_loads_back(tmp_path):
    videos, control = sprites()
    bench = load_benchmark(write_benchmark(tmp_path / "b", control, videos))
    assert bench.ids == ["0000", "0001", "0002"] and bench.name == "b"
    assert torch.allclose(bench.control.trajectory, control.trajectory, atol=1e-6)
    assert torch.equal(bench.control.visibility, control.visibility)
    assert (bench.control.reference - control.reference).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    assert bench.control.prompt == control.prompt
    assert bench.videos.shape == videos.shape and (bench.videos - videos).abs().max() <= 0.5 / 255 + 1e-6


def hand_folder(tmp_path, points, units="normalized", visibility=None, extra=None, video_frames=None):
    """One 16x8 (W x H) item written by hand; pixels units are of that image."""
    import imageio.v2 as imageio

    (tmp_path / "images").mkdir(parents=True, exist_ok=True)
    imageio.imwrite(tmp_path / "images" / "a.png", np.zeros((8, 16, 3), np.uint8))
    track = {"points": points, "units": units} | ({"visibility": visibility} if visibility is not None else {})
    (tmp_path / "a.json").write_text(json.dumps(track))
    item = {"id": "a", "image": "images/a.png", "prompt": "a", "tracks": "a.json"} | (extra or {})
    if video_frames is not None:
        np.save(tmp_path / "a.npy", np.zeros((video_frames, 8, 16, 3), np.uint8))
        item["video"] = "a.npy"
    (tmp_path / "benchmark.json").write_text(json.dumps({"num_frames": 2, "image_size": 8, "items": [item]}))
    return tmp_path


def test_pixel_units_default_visibility_and_resize(tmp_path):
    bench = load_benchmark(hand_folder(tmp_path, [[[8, 4]], [[16, 0]]], units="pixels", video_frames=2))
    # (8, 4) px of a 16 x 8 image -> (0.5, 0.5); (16, 0) -> (1, 0)
    assert torch.allclose(bench.control.trajectory[0, :, 0], torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert bool(bench.control.visibility.all())
    assert bench.control.reference.shape == (1, 3, 8, 8) and bench.videos.shape == (1, 2, 3, 8, 8)


def test_items_with_fewer_tracks_are_padded_invisible(tmp_path):
    videos, control = sprites(2)
    folder = write_benchmark(tmp_path / "b", control)
    one = json.loads((folder / "tracks" / "0001.json").read_text())
    one["points"] = [row[:1] for row in one["points"]]
    one["visibility"] = [row[:1] for row in one["visibility"]]
    (folder / "tracks" / "0001.json").write_text(json.dumps(one))
    bench = load_benchmark(folder)
    assert bench.control.trajectory.shape[2] == 2 and not bool(bench.control.visibility[1, :, 1].any())
    assert bench.videos is None


@pytest.mark.parametrize(
    "breakage, match",
    [
        (lambda f: (f / "benchmark.json").unlink(), r"benchmark.json: file not found"),
        (lambda f: (f / "benchmark.json").write_text("{"), r"benchmark.json: .* is not valid JSON"),
        (lambda f: (f / "benchmark.json").write_text(json.dumps({"num_frames": 2, "items": []})), r"items: .*non-empty"),
        (lambda f: (f / "benchmark.json").write_text(json.dumps({"items": [{}]})), r"num_frames: "),
        (lambda f: _edit_item(f, lambda it: it.pop("prompt")), r"prompt: .*item 0 needs a string field 'prompt'"),
        (lambda f: (f / "images" / "a.png").unlink(), r"image \(.*item 0\): file not found: .*a.png"),
        (lambda f: (f / "images" / "a.png").write_bytes(b"nope"), r"image \(.*\): .*a.png is not a readable image"),
        (lambda f: (f / "a.json").write_text(json.dumps({"points": [[[0.5, 0.5]]]})), r"points: .*a.json: expected shape \[T=2, K>=1, 2\], got \[1, 1, 2\]"),
        (lambda f: (f / "a.json").write_text(json.dumps({"points": [[[0.5, 0.5]], [[1.5, 0.5]]]})), r"points: .*a.json: visible point \(frame 1, track 0\) lies outside"),
        (lambda f: (f / "a.json").write_text(json.dumps({"points": [[[0.5, 0.5]], [[0.5, 0.5]]], "units": "cm"})), r"units: .*a.json.*'cm'"),
        (lambda f: (f / "a.json").write_text(json.dumps({"points": [[[0.5, 0.5]], [[0.5, 0.5]]], "visibility": [[True]]})), r"visibility: .*a.json: expected shape \[2, 1\]"),
        (lambda f: np.save(f / "a.npy", np.zeros((3, 8, 16, 3), np.uint8)), r"video: .*a.npy has 3 frames, benchmark.json says num_frames=2"),
        (lambda f: np.save(f / "a.npy", np.zeros((2, 8, 16, 3), np.float32)), r"video \(.*\): .*a.npy must be uint8 \[T, H, W, 3\]"),
    ],
)
def test_broken_folders_name_file_and_field(tmp_path, breakage, match):
    folder = hand_folder(tmp_path, [[[0.5, 0.5]], [[0.6, 0.5]]], video_frames=2)
    breakage(folder)
    with pytest.raises(BenchmarkError, match=match):
        load_benchmark(folder)


def test_a_point_outside_but_hidden_is_fine(tmp_path):
    bench = load_benchmark(hand_folder(tmp_path, [[[0.5, 0.5]], [[1.5, 0.5]]], visibility=[[True], [False]]))
    assert not bool(bench.control.visibility[0, 1, 0])


def _edit_item(folder, change):
    spec = json.loads((folder / "benchmark.json").read_text())
    change(spec["items"][0])
    (folder / "benchmark.json").write_text(json.dumps(spec))
