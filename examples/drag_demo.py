"""Real-time drag demo: draw a path on the image in the browser, watch the video follow it, change it mid-stream.

A local web app (FastAPI + WebSocket on uvicorn, a plain-JavaScript canvas page; nothing fetched
from outside) around ``policies.generate``. Default: the bundled Sprites-Drag student on CPU.
The policy is built from the GRPO job's config groups (policy, step, codec, controls), so a real
model takes the same overrides. Downloaded clips are also saved under ``<run dir>/clips/``.
Protocol and page: docs/demo.md.

Launch:
    python examples/drag_demo.py                                   # prints the URL (http://127.0.0.1:8000)
    python examples/drag_demo.py serve.port=0 serve.max_sessions=4  # any free port, four sessions at once
    python examples/drag_demo.py policy=wan policy.path=... policy.text_encoder_path=... codec=wan_vae codec.local_dir=... \\
        controls.num_frames=21 serve.height=480 serve.width=832 serve.image_format=jpeg
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING

from examples.ar_drag import components

DEFAULTS = [{"policy": "sprites_student"}, {"step": "cps"}, {"codec": "pixel"}, {"controls": "sprites"}, "_self_"]


@dataclass
class ServeConf:
    """The web app: where it listens, how many sessions generate at once, the clip geometry."""

    host: str = "127.0.0.1"  # address to bind (loopback: only this machine can connect)
    port: int = 8000  # TCP port (0: any free port; the printed URL names it)
    max_sessions: int = 2  # connections generating at once; later ones are told to wait in line
    max_frames: int = 64  # latent frames one stream may reach (past the clip with the rolling KV window)
    pace: float = 0.05  # default drag speed in normalized image units per pixel frame (the page has a slider)
    scenes: int = 12  # Sprites-Drag held-out scenes offered as reference images
    height: int | None = None  # pixel height of the generated frames (None: controls.image_size)
    width: int | None = None  # pixel width (None: controls.image_size)
    image_format: str = "png"  # frames sent as png (lossless) or jpeg (smaller for large frames)
    threads: int | None = None  # torch CPU threads (None: torch's default)


@dataclass
class DragDemoConfig:
    """Drag demo. Every field is a Hydra override; `--cfg job` prints them all."""

    defaults: list[Any] = field(default_factory=lambda: list(DEFAULTS))
    policy: Any = MISSING  # the causal student (group: sprites_student, wan)
    step: Any = MISSING  # its stochastic step (group: cps, euler_maruyama; unused by ODE generation, needed to build the policy)
    codec: Any = MISSING  # latents <-> pixels (group: pixel, wan_vae)
    controls: Any = MISSING  # the scenes offered and the clip length: controls.num_frames pixel frames (group: sprites)
    serve: ServeConf = field(default_factory=ServeConf)  # the web app


cs = ConfigStore.instance()
cs.store(name="drag_demo", node=DragDemoConfig)
components.register(cs)


def clip_frames(pixel_frames: int, temporal_factor: int, frames_per_block: int) -> int:
    """Latent frames F of a clip of ``pixel_frames = 1 + (F - 1) * temporal_factor`` (a multiple of the model's block)."""
    if (pixel_frames - 1) % temporal_factor:
        raise ValueError(
            f"controls.num_frames = {pixel_frames} pixel frames must be 1 + (F - 1) * {temporal_factor} for the codec's "
            f"temporal_factor = {temporal_factor} (e.g. {1 + 4 * temporal_factor})"
        )
    f = 1 + (pixel_frames - 1) // temporal_factor
    if f % frames_per_block:
        raise ValueError(f"a clip of F = {f} latent frames is not a multiple of the model's frames_per_block = {frames_per_block}")
    return f


def scenes_of(controls, count: int, height: int, width: int) -> list:
    """The first ``count`` held-out Sprites-Drag scenes as page scenes at the model's size."""
    from examples.demo.server import Scene

    if not count:
        return []
    heldout = controls.heldout_controls()
    refs = torch.nn.functional.interpolate(heldout.reference[:count], size=(height, width), mode="bilinear", antialias=True)  # [S, 3, H, W]
    starts = [[[round(float(v), 4) for v in heldout.trajectory[i, 0, k]] for k in range(heldout.trajectory.shape[2]) if heldout.visibility[i, 0, k]] for i in range(len(refs))]
    return [Scene(refs[i].clamp(0, 1), heldout.prompt[i], starts[i]) for i in range(len(refs))]


def main(cfg: DragDemoConfig) -> None:
    import uvicorn

    from examples.demo.server import create_app
    from examples.demo.session import DemoModel

    if cfg.serve.threads:
        torch.set_num_threads(cfg.serve.threads)

    # Build the policy (as the GRPO job does) and the scenes
    codec = instantiate(cfg.codec)
    policy = instantiate(cfg.policy, codec=codec, step=cfg.step)
    policy.model.eval()
    controls = instantiate(cfg.controls, split="heldout")
    height, width = cfg.serve.height or controls.image_size, cfg.serve.width or controls.image_size
    block = int(getattr(policy, "frames_per_block", 1))
    frames = clip_frames(controls.num_frames, int(codec.temporal_factor), block)
    if cfg.serve.max_frames < frames or cfg.serve.max_frames % block:
        raise ValueError(f"serve.max_frames = {cfg.serve.max_frames} must be >= the clip's {frames} latent frames and a multiple of frames_per_block = {block}")
    model = DemoModel(policy, codec, height, width, frames, cfg.serve.max_frames, cfg.serve.pace)
    scenes = scenes_of(controls, cfg.serve.scenes, height, width)

    # Serve
    out = Path(HydraConfig.get().runtime.output_dir)
    app = create_app(model, scenes, cfg.serve.max_sessions, cfg.serve.image_format, clip_dir=out / "clips")
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.serve.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.serve.host, cfg.serve.port))
    sock.listen(128)  # connections queue from now on, before uvicorn starts serving
    port = sock.getsockname()[1]
    host = f"[{cfg.serve.host}]" if ":" in cfg.serve.host else cfg.serve.host
    print(f"drag demo: open http://{host}:{port}/  ({height}x{width}, clip {frames} latent frames, up to {cfg.serve.max_sessions} sessions; Ctrl+C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


@hydra.main(version_base=None, config_name="drag_demo")
def _entry(cfg: DragDemoConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    _entry()
