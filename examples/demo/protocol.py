"""The drag demo's WebSocket protocol: JSON up, binary frames down (docs/demo.md has the whole table).

Up (text, one JSON object per message, ``type`` names it):

  start     {"scene": i | "image": data-URL, "prompt"?, "paths", "frames"?, "seed"?, "pace"?}  a new stream
  paths     {"paths"}                        new drag paths for the frames not yet generated (version + 1)
  stop      {}                               pause after the frame being generated
  continue  {"frames"?}                      generate more frames (past the clip: the rolling KV window)
  download  {"format"?: "gif" | "mp4"}       the frames so far with the paths drawn, as one binary "clip"

Down: text JSON (``ready``, ``wait``, ``started``, ``control``, ``done``, ``error``) and binary
envelopes ``[uint32 big-endian n][n bytes JSON header][payload]`` (:func:`pack`): a ``frame``
(header: index, latent_index, version, latency_s, ...; payload PNG/JPEG) per pixel frame,
and a ``clip`` (payload GIF/MP4).

Paths are lists of ``[x, y]`` points in normalized image coordinates (x right, y down, in [0, 1]).
The sprite under a path's first point is dragged along it at ``pace`` normalized units per pixel
frame (:func:`paths_to_trajectory`), and holds at the path's end; extending a path lets it go on.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MAX_PATHS", "MAX_POINTS", "ProtocolError", "Start", "Paths", "Stop", "Continue", "Download",
    "parse_message", "parse_paths", "paths_to_trajectory", "pack", "unpack",
]  # fmt: skip

MAX_PATHS = 8  # drag paths per control (K)
MAX_POINTS = 1024  # points per path
MAX_MESSAGE_CHARS = 16 * 1024 * 1024  # an uploaded image as a data URL included
FORMATS = ("gif", "mp4")


class ProtocolError(ValueError):
    """A malformed message: the server answers ``{"type": "error", "message": str(err)}`` and goes on."""


@dataclass
class Start:
    """Begin a new stream (replaces the current one)."""

    paths: list[Tensor]  # K paths, each [L_k, 2] normalized (x, y)
    scene: int | None = None  # Sprites-Drag scene index (the page's scene list)
    image: str | None = None  # or an uploaded reference image as a data URL (PNG/JPEG)
    prompt: str | None = None  # None: the scene's caption (or "" for an upload)
    frames: int | None = None  # latent frames before pausing (None: one clip)
    seed: int = 0  # initial noise
    pace: float | None = None  # drag speed, normalized units per pixel frame (None: the server's default)


@dataclass
class Paths:
    """New paths for the frames not yet generated."""

    paths: list[Tensor]  # K paths, each [L_k, 2]


@dataclass
class Stop:
    """Pause after the frame being generated."""


@dataclass
class Continue:
    """Generate ``frames`` more latent frames (None: one clip)."""

    frames: int | None = None


@dataclass
class Download:
    """The frames so far with the paths drawn, as one binary ``clip``."""

    format: str = "gif"  # gif | mp4


def _int(msg: dict, key: str, low: int, default=None) -> int | None:
    value = msg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ProtocolError(f"{key!r} must be an integer >= {low}, got {value!r:.80}")
    return value


def parse_paths(value) -> list[Tensor]:
    """``[[[x, y], ...], ...]`` -> K tensors ``[L_k, 2]``; 1 <= K <= MAX_PATHS, points finite and in [0, 1]."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PATHS:
        got = f"{len(value)} paths" if isinstance(value, list) else type(value).__name__
        raise ProtocolError(f"'paths' must be a list of 1 to {MAX_PATHS} paths (draw at least one), got {got}")
    out = []
    for k, path in enumerate(value):
        if not isinstance(path, list) or not 1 <= len(path) <= MAX_POINTS:
            got = f"{len(path)} points" if isinstance(path, list) else type(path).__name__
            raise ProtocolError(f"paths[{k}] must be a list of 1 to {MAX_POINTS} [x, y] points, got {got}")
        for i, point in enumerate(path):
            ok = isinstance(point, list) and len(point) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            if not ok or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in point):
                raise ProtocolError(f"paths[{k}][{i}] must be [x, y] with 0 <= x, y <= 1 (normalized), got {point!r:.80}")
        out.append(torch.tensor(path, dtype=torch.float32))  # [L_k, 2]
    return out


def parse_message(text: str | bytes):
    """One up message -> :class:`Start` | :class:`Paths` | :class:`Stop` | :class:`Continue` | :class:`Download`."""
    if isinstance(text, bytes):
        raise ProtocolError("messages up are JSON text; binary messages are only sent down")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"message of {len(text)} characters exceeds {MAX_MESSAGE_CHARS}")
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"message is not JSON: {err}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"message must be a JSON object with a string 'type', got {text[:80]!r}")
    kind = msg["type"]
    if kind == "start":
        scene, image = msg.get("scene"), msg.get("image")
        if (scene is None) == (image is None):
            raise ProtocolError("'start' needs exactly one of 'scene' (an index) or 'image' (a data URL)")
        if image is not None and not (isinstance(image, str) and image.startswith("data:image/")):
            raise ProtocolError(f"'image' must be a data URL 'data:image/...;base64,...', got {str(image)[:40]!r}")
        prompt = msg.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ProtocolError(f"'prompt' must be a string, got {type(prompt).__name__}")
        pace = msg.get("pace")
        if pace is not None and (isinstance(pace, bool) or not isinstance(pace, (int, float)) or not 0 < pace <= 1):
            raise ProtocolError(f"'pace' must be a number in (0, 1] (normalized units per frame), got {pace!r:.40}")
        return Start(
            paths=parse_paths(msg.get("paths")), scene=_int(msg, "scene", 0), image=image, prompt=prompt,
            frames=_int(msg, "frames", 1), seed=_int(msg, "seed", 0, 0), pace=None if pace is None else float(pace),
        )  # fmt: skip
    if kind == "paths":
        return Paths(parse_paths(msg.get("paths")))
    if kind == "stop":
        return Stop()
    if kind == "continue":
        return Continue(_int(msg, "frames", 1))
    if kind == "download":
        fmt = msg.get("format", "gif")
        if fmt not in FORMATS:
            raise ProtocolError(f"'format' must be one of {FORMATS}, got {fmt!r:.40}")
        return Download(fmt)
    raise ProtocolError(f"unknown message type {kind!r:.40}; expected start, paths, stop, continue or download")


def paths_to_trajectory(paths: list[Tensor], num_frames: int, pace: float) -> Tensor:
    """Drag paths -> trajectory ``[T, K, 2]``: frame t at arc length ``min(t * pace, L_k)`` along path k.

    Example: a path (0.2, 0.5) -> (0.6, 0.5) (length 0.4) at pace 0.1 gives x = 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, ...
    """
    if not pace > 0:
        raise ValueError(f"pace must be > 0 normalized units per frame, got {pace}")
    s = torch.arange(num_frames, dtype=torch.float64) * pace  # [T] arc length wanted
    out = []
    for path in paths:
        pts = path.to(torch.float64)  # [L, 2]
        seg = (pts[1:] - pts[:-1]).norm(dim=-1)  # [L-1]
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), seg.cumsum(0)])  # [L]
        target = s.clamp(max=float(cum[-1]))  # [T]
        j = torch.searchsorted(cum, target, right=True).clamp(1, max(len(pts) - 1, 1)) - 1  # [T] segment start
        if len(pts) == 1:
            out.append(pts[0].expand(num_frames, 2))
            continue
        frac = ((target - cum[j]) / seg[j].clamp(min=1e-12)).clamp(0, 1).unsqueeze(-1)  # [T, 1]
        out.append(pts[j] + frac * (pts[j + 1] - pts[j]))  # [T, 2]
    return torch.stack(out, dim=1).float().clamp(0, 1)  # [T, K, 2]


def pack(header: dict, payload: bytes = b"") -> bytes:
    """A binary down message: ``[uint32 big-endian n][n bytes UTF-8 JSON header][payload]``."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + payload


def unpack(data: bytes) -> tuple[dict, bytes]:
    """Inverse of :func:`pack`."""
    if len(data) < 4:
        raise ProtocolError(f"binary message of {len(data)} bytes is shorter than its 4-byte header length")
    (n,) = struct.unpack(">I", data[:4])
    return json.loads(data[4 : 4 + n].decode()), data[4 + n :]
