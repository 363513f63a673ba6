"""Atomic safetensors + JSON checkpoints (never pickles).

A checkpoint is a directory ``<root>/ckpt-<iteration:08d>/`` written under a
temporary name and renamed into place, so a run killed at any point leaves
either the previous complete checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "save_tensors",
    "load_tensors",
    "save_json",
    "load_json",
    "optimizer_to_tensors",
    "optimizer_from_tensors",
    "optimizer_state_from_tensors",
    "write_checkpoint_dir",
    "latest_checkpoint",
]

_CKPT = re.compile(r"^ckpt-(\d{8})$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(payload, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return load_file(str(path), device=str(device))


def save_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``sort_keys=False`` keeps the mappings' order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=sort_keys)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path) as f:
        return json.load(f)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer | dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer ``state_dict`` (or the optimizer itself) into safetensors-able tensors and a JSON-able rest."""
    state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load into ``optimizer``."""
    optimizer.load_state_dict(optimizer_state_from_tensors(tensors, rest))


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`optimizer_to_tensors`: the optimizer ``state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in rest.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def write_checkpoint_dir(root: str | os.PathLike, iteration: int, files: dict[str, Any], keep_last: int = 2) -> Path:
    """Write ``files`` (name -> tensor dict for ``*.safetensors``, JSON object otherwise) as one atomic directory.

    Older checkpoints beyond ``keep_last`` are removed after the new one is in place.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"ckpt-{iteration:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".ckpt-{iteration:08d}.", dir=root))
    try:
        for name, content in files.items():
            if name.endswith(".safetensors"):
                save_tensors(tmp / name, content)
            else:
                save_json(tmp / name, content)
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep_last > 0:
        done = sorted(p for p in root.iterdir() if _CKPT.match(p.name))
        for old in done[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory under ``root`` (``None`` if there is none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = sorted(p for p in root.iterdir() if p.is_dir() and _CKPT.match(p.name))
    return found[-1] if found else None
