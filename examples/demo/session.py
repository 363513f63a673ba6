"""One generation stream of the drag demo: ``policies.generate`` with a control that may change between frames.

Synchronous and thread-safe for one caller at a time: the server runs :meth:`Stream.next_frame`
in a worker thread (CPU generation releases the GIL) and :meth:`Stream.set_paths` from its
event loop. Each frame carries the control version it was generated with.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import threading
from dataclasses import dataclass

import cv2
import imageio.v2 as imageio
import numpy as np
import torch
from torch import Tensor

from examples.demo.protocol import ProtocolError, paths_to_trajectory
from rldiff.types import Control

__all__ = ["DemoModel", "Stream", "StreamFrame", "decode_image", "encode_image", "draw_paths", "encode_clip"]


@dataclass
class DemoModel:
    """What a stream needs: the policy (its model, encoder, steps, shift), the codec and the clip geometry."""

    policy: object  # FlowPolicy (model, encoder, num_steps, shift)
    codec: object  # rldiff.protocols.Codec with stream_decoder()
    height: int  # pixel frame height
    width: int  # pixel frame width
    clip_frames: int  # latent frames F of one clip ("start" and "continue" without "frames")
    max_frames: int  # latent frames one stream may reach (past the clip: the rolling KV window)
    pace: float = 0.05  # default drag speed, normalized units per pixel frame

    def pixel_frames(self, latent_frames: int) -> int:
        """``T = 1 + (F - 1) * temporal_factor``."""
        return 1 + (latent_frames - 1) * int(self.codec.temporal_factor)


@dataclass
class StreamFrame:
    """One generated latent frame as the page receives it."""

    latent_index: int  # m
    first_pixel: int  # index of its first pixel frame in the stream
    pixels: np.ndarray  # [t, H, W, 3] uint8
    version: int  # control version it was generated with
    latency_s: float  # seconds from the stream's start until decoded
    frame_s: float  # seconds for this frame alone


def decode_image(data_url: str, height: int, width: int) -> Tensor:
    """A PNG/JPEG data URL -> reference ``[3, H, W]`` float in [0, 1], resized to the model's size."""
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
    except (IndexError, ValueError):
        raise ProtocolError("'image' data URL does not hold base64 data after the comma") from None
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProtocolError("'image' could not be decoded as PNG/JPEG")
    rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_AREA)  # [H, W, 3]
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0  # [3, H, W]


def encode_image(pixels: np.ndarray, fmt: str = "png") -> bytes:
    """``[H, W, 3]`` uint8 RGB -> PNG or JPEG bytes."""
    ok, buf = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for a {pixels.shape} frame as {fmt}")
    return buf.tobytes()


class Stream:
    """A generation stream for one reference image, prompt and set of drag paths.

    Args:
        model: the :class:`DemoModel`.
        reference: ``[3, H, W]`` first frame in [0, 1].
        prompt: caption.
        paths: K drag paths ``[L_k, 2]`` (normalized).
        pace: drag speed in normalized units per pixel frame.
        seed: initial noise seed.
    """

    def __init__(self, model: DemoModel, reference: Tensor, prompt: str, paths: list[Tensor], pace: float, seed: int) -> None:
        from policies import generate

        self.model, self.reference, self.prompt, self.pace = model, reference, prompt, pace
        self.num_pixel = model.pixel_frames(model.max_frames)  # T of the whole stream
        self.version = 1
        self.paths = {1: paths}  # version -> paths
        self._control = self._make_control(paths)
        self._latest = (1, self._control)  # (version, control), swapped as one reference
        self._applied = 1  # version of the control the next frame is generated with
        self._lock = threading.Lock()
        self.frames: list[StreamFrame] = []
        self._pixel_count = 0
        policy = model.policy
        self._gen = generate(
            policy, policy.encoder, model.codec, self._control, model.max_frames, policy.num_steps, policy.shift,
            generator=torch.Generator().manual_seed(seed), trajectory_fn=self._trajectory_fn,
        )  # fmt: skip

    def _make_control(self, paths: list[Tensor]) -> Control:
        traj = paths_to_trajectory(paths, self.num_pixel, self.pace).unsqueeze(0)  # [1, T, K, 2]
        vis = torch.ones(traj.shape[:3], dtype=torch.bool)  # [1, T, K]
        return Control(trajectory=traj, visibility=vis, reference=self.reference.unsqueeze(0), prompt=[self.prompt])

    def set_paths(self, paths: list[Tensor]) -> int:
        """New paths for the frames not yet generated; returns their control version."""
        control = self._make_control(paths)
        self.version += 1
        self.paths[self.version] = paths
        self._latest = (self.version, control)  # read by _trajectory_fn in the generation thread
        return self.version

    def _trajectory_fn(self, m: int, control: Control) -> Control | None:
        version, latest = self._latest
        if version == self._applied:
            return None
        self._applied = version
        return latest

    @property
    def done(self) -> bool:
        """Whether the stream reached ``max_frames``."""
        return len(self.frames) >= self.model.max_frames

    def next_frame(self) -> StreamFrame:
        """Generate and decode the next latent frame (blocking)."""
        with self._lock:
            out = next(self._gen)
            pixels = (out.frames[0].detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)  # [t, H, W, 3]
            frame = StreamFrame(out.index, self._pixel_count, pixels, self._applied, out.latency_s, out.frame_s)
            self._pixel_count += pixels.shape[0]
            self.frames.append(frame)
            return frame

    def close(self) -> None:
        """Stop generating (waits for a frame in progress) and free the KV cache."""
        with self._lock:
            self._gen.close()

    def clip(self, fmt: str = "gif", scale: int | None = None, fps: int = 8) -> bytes:
        """The frames so far with each frame's paths drawn, as GIF or MP4 bytes."""
        if not self.frames:
            raise ProtocolError("nothing to download yet: start a stream first")
        scale = scale or max(1, 256 // max(self.model.height, self.model.width))
        drawn = []
        for f in self.frames:
            paths = self.paths[f.version]
            traj = paths_to_trajectory(paths, self.num_pixel, self.pace)  # [T, K, 2]
            for i, px in enumerate(f.pixels):
                drawn.append(draw_paths(px, paths, traj[f.first_pixel + i], scale))
        return encode_clip(drawn, fmt, fps)


def draw_paths(pixels: np.ndarray, paths: list[Tensor], points: Tensor, scale: int) -> np.ndarray:
    """Upscale ``[H, W, 3]`` uint8 by ``scale`` and draw each path (white polyline) and its current target ``points [K, 2]`` (ring)."""
    h, w, _ = pixels.shape
    img = np.ascontiguousarray(cv2.resize(pixels, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST))
    size = np.array([w * scale, h * scale], dtype=np.float32)
    for path, point in zip(paths, points):
        pts = (path.numpy() * size).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.circle(img, tuple(int(v) for v in (point.numpy() * size)), max(2, scale), (255, 255, 255), 1, cv2.LINE_AA)
    return img


def encode_clip(frames: list[np.ndarray], fmt: str, fps: int) -> bytes:
    """``[H, W, 3]`` uint8 frames -> looping GIF, or MP4 (MPEG-4 part 2 through OpenCV's FFmpeg)."""
    if fmt == "gif":
        buf = io.BytesIO()
        imageio.mimsave(buf, frames, format="GIF", duration=1.0 / fps, loop=0)
        return buf.getvalue()
    h, w, _ = frames[0].shape
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise ProtocolError("mp4 is not available (OpenCV without FFmpeg); download a gif instead")
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.remove(path)
