"""The drag demo's web app: a static canvas page and one WebSocket generation session per connection.

``create_app(model, scenes, ...)`` returns a FastAPI app:

  GET /             the page (examples/demo/static, plain JavaScript, nothing fetched from outside)
  GET /api/info     model geometry, default pace, the Sprites-Drag scenes (PNG data URLs, captions, sprite centres)
  GET /api/status   active / waiting sessions, open streams, frames generated (tests and monitoring)
  WS  /ws           the protocol of :mod:`examples.demo.protocol` (docs/demo.md)

At most ``max_sessions`` connections generate at once; the next ones get ``{"type": "wait",
"position": p}`` and a ``ready`` when a slot frees (first come, first served). A disconnect
stops the session's generation after the frame in progress and frees its slot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from torch import Tensor

from examples.demo.protocol import Continue, Download, Paths, ProtocolError, Start, Stop, pack, parse_message
from examples.demo.session import DemoModel, Stream, decode_image, encode_image

__all__ = ["Counters", "Scene", "SessionSlots", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class Scene:
    """A reference image the page offers."""

    reference: Tensor  # [3, H, W] in [0, 1], at the model's size
    caption: str  # the default prompt
    starts: list[list[float]]  # [K][2] sprite centres at frame 0 (normalized), where a drag begins


class SessionSlots:
    """First-come-first-served slots for generating sessions (thread-safe; works across event loops)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_sessions must be >= 1, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()

    def enter(self) -> int:
        """Take a ticket (queued until :meth:`ready` grants it)."""
        with self._lock:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            return ticket

    def ready(self, ticket: int) -> bool:
        """Grant the slot when this ticket is first in line and a slot is free."""
        with self._lock:
            if ticket in self._active:
                return True
            if self._queue and self._queue[0] == ticket and len(self._active) < self.limit:
                self._queue.popleft()
                self._active.add(ticket)
                return True
            return False

    def position(self, ticket: int) -> int:
        """1-based place in the waiting line (0: holds a slot)."""
        with self._lock:
            return 0 if ticket in self._active else list(self._queue).index(ticket) + 1

    def leave(self, ticket: int) -> None:
        with self._lock:
            self._active.discard(ticket)
            if ticket in self._queue:
                self._queue.remove(ticket)

    def counts(self) -> tuple[int, int]:
        """(active, waiting)."""
        with self._lock:
            return len(self._active), len(self._queue)


class Counters:
    """Thread-safe counters: ``streams_open``, ``frames_generated``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = {"streams_open": 0, "frames_generated": 0}

    def add(self, key: str, n: int) -> None:
        with self._lock:
            self._values[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _data_url(image: Tensor) -> str:
    pixels = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # [H, W, 3]
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "png")).decode()


class Connection:
    """One WebSocket session: its inbox, its stream and its generation task."""

    def __init__(self, ws: WebSocket, app) -> None:
        self.ws, self.app = ws, app
        self.model: DemoModel = app.state.model
        self.stream: Stream | None = None
        self.task: asyncio.Task | None = None
        self.stop_requested = False
        self.send_lock = asyncio.Lock()

    async def send_json(self, msg: dict) -> None:
        async with self.send_lock:
            await self.ws.send_json(msg)

    async def send_bytes(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(data)

    async def end_stream(self) -> None:
        """Cancel the generation task and close the stream (waits for a frame in progress)."""
        task, stream = self.task, self.stream
        self.task = self.stream = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if stream is not None:
            await asyncio.to_thread(self._close, stream)

    def release(self) -> None:
        """:meth:`end_stream` without awaiting (the connection is gone and may be cancelled itself)."""
        task, stream = self.task, self.stream
        self.task = self.stream = None
        if task is not None:
            task.cancel()
        if stream is not None:
            threading.Thread(target=self._close, args=(stream,), daemon=True).start()

    def _close(self, stream: Stream) -> None:
        stream.close()
        self.app.state.stats.add("streams_open", -1)

    def begin(self, frames: int | None) -> None:
        self.stop_requested = False
        self.task = asyncio.create_task(self.generate(frames or self.model.clip_frames))

    async def generate(self, budget: int) -> None:
        """Generate up to ``budget`` latent frames, sending each pixel frame as it is decoded."""
        stream, stats, fmt = self.stream, self.app.state.stats, self.app.state.image_format
        reason = "budget"
        try:
            for _ in range(budget):
                if stream.done or self.stop_requested:
                    break
                frame = await asyncio.to_thread(stream.next_frame)
                stats.add("frames_generated", 1)
                for i, pixels in enumerate(frame.pixels):
                    header = {
                        "type": "frame", "index": frame.first_pixel + i, "latent_index": frame.latent_index, "version": frame.version,
                        "latency_s": round(frame.latency_s, 4), "frame_s": round(frame.frame_s, 4), "width": pixels.shape[1],
                        "height": pixels.shape[0], "mime": f"image/{fmt}",
                    }  # fmt: skip
                    await self.send_bytes(pack(header, encode_image(pixels, fmt)))
            reason = "stopped" if self.stop_requested else "max_frames" if stream.done else "budget"
        except Exception as err:  # a failed frame is reported to the page; the session goes on
            traceback.print_exc()
            reason = "error"
            await self.send_json({"type": "error", "message": f"generation failed: {type(err).__name__}: {err}"})
        await self.send_json({"type": "done", "frames": len(stream.frames), "reason": reason, "max_frames": self.model.max_frames})

    async def handle(self, msg) -> None:
        model = self.model
        if isinstance(msg, Start):
            if msg.scene is not None:
                scenes = self.app.state.scenes
                if msg.scene >= len(scenes):
                    raise ProtocolError(f"'scene' must be < {len(scenes)} (the scenes of /api/info), got {msg.scene}")
                reference, caption = scenes[msg.scene].reference, scenes[msg.scene].caption
            else:
                reference, caption = decode_image(msg.image, model.height, model.width), ""
            await self.end_stream()
            prompt = caption if msg.prompt is None else msg.prompt
            self.stream = Stream(model, reference, prompt, msg.paths, msg.pace or model.pace, msg.seed)
            self.app.state.stats.add("streams_open", 1)
            await self.send_json({"type": "started", "version": 1, "prompt": prompt, "frames": msg.frames or model.clip_frames})
            self.begin(msg.frames)
        elif isinstance(msg, Paths):
            if self.stream is None:
                raise ProtocolError("'paths' before 'start': start a stream first")
            await self.send_json({"type": "control", "version": self.stream.set_paths(msg.paths), "from_frame": len(self.stream.frames)})
        elif isinstance(msg, Stop):
            self.stop_requested = True
            if self.task is None or self.task.done():
                await self.send_json({"type": "done", "frames": len(self.stream.frames) if self.stream else 0, "reason": "stopped", "max_frames": model.max_frames})
        elif isinstance(msg, Continue):
            if self.stream is None:
                raise ProtocolError("'continue' before 'start': start a stream first")
            if self.task is not None and not self.task.done():
                raise ProtocolError("'continue' while generating: send 'stop' first or wait for 'done'")
            self.begin(msg.frames)
        elif isinstance(msg, Download):
            if self.stream is None:
                raise ProtocolError("nothing to download yet: start a stream first")
            data = await asyncio.to_thread(self.stream.clip, msg.format)
            clip_dir = self.app.state.clip_dir
            if clip_dir is not None:
                clip_dir.mkdir(parents=True, exist_ok=True)
                (clip_dir / f"clip-{time.strftime('%H%M%S')}-{id(self) % 10000}.{msg.format}").write_bytes(data)
            await self.send_bytes(pack({"type": "clip", "format": msg.format, "frames": len(self.stream.frames), "bytes": len(data)}, data))


async def _receive(ws: WebSocket, inbox: asyncio.Queue) -> None:
    """Put every message received in ``inbox``; ``None`` when the page disconnects."""
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            await inbox.put(msg.get("text") if msg.get("text") is not None else msg.get("bytes"))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await inbox.put(None)


def create_app(model: DemoModel, scenes: list[Scene], max_sessions: int = 2, image_format: str = "png", clip_dir: Path | None = None) -> FastAPI:
    """The demo app around a built :class:`DemoModel` (see module doc)."""
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    app = FastAPI(title="rldiff drag demo")
    app.state.model, app.state.scenes, app.state.image_format = model, scenes, image_format
    app.state.clip_dir = None if clip_dir is None else Path(clip_dir)
    app.state.slots = SessionSlots(max_sessions)
    app.state.stats = Counters()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    def info():
        return {
            "height": model.height, "width": model.width, "clip_frames": model.clip_frames, "max_frames": model.max_frames,
            "temporal_factor": int(model.codec.temporal_factor), "pace": model.pace, "max_sessions": max_sessions,
            "scenes": [{"image": _data_url(s.reference), "caption": s.caption, "starts": s.starts} for s in scenes],
        }  # fmt: skip

    @app.get("/api/status")
    def status():
        active, waiting = app.state.slots.counts()
        return {"active": active, "waiting": waiting, **app.state.stats.snapshot()}

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket):
        await ws.accept()
        inbox: asyncio.Queue = asyncio.Queue()
        receiver = asyncio.create_task(_receive(ws, inbox))
        slots = app.state.slots
        ticket = slots.enter()
        conn = Connection(ws, app)
        try:
            if not slots.ready(ticket):
                await conn.send_json({"type": "wait", "position": slots.position(ticket), "limit": slots.limit})
                while not slots.ready(ticket):
                    if receiver.done():
                        return
                    await asyncio.sleep(0.05)
            await conn.send_json({"type": "ready", "limit": slots.limit})
            while True:
                text = await inbox.get()
                if text is None:
                    break
                try:
                    await conn.handle(parse_message(text))
                except ProtocolError as err:
                    await conn.send_json({"type": "error", "message": str(err)})
                except (WebSocketDisconnect, asyncio.CancelledError):
                    raise
                except Exception as err:  # a bug or a bad upload: reported, logged, the session goes on
                    traceback.print_exc()
                    await conn.send_json({"type": "error", "message": f"{type(err).__name__}: {err}"})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:  # no awaits: the handler may be cancelled itself
            slots.leave(ticket)
            receiver.cancel()
            conn.release()

    return app
