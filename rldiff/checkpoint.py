"""Atomic safetensors + JSON checkpoints (never pickles).

A checkpoint is a directory ``<root>/ckpt-<iteration:08d>/`` written under a
temporary name (``<root>/.ckpt-<iteration:08d>.<random>``) and renamed into
place, so a run killed at any point leaves either the previous complete
checkpoint or the new one, never half of one. Files are fsynced before their
rename and directories after, so the rename survives a power loss too. A
killed write leaves its temporary directory behind: the next write removes
such leftovers (:func:`remove_stale_temporaries`; call it at start as well).

Every load names the file it read: a truncated or garbage file, a missing
required key or a wrong shape raises an error with the path (or source), what
was expected and what was found.
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
    "checkpoint_iteration",
    "remove_stale_temporaries",
    "check_state_shapes",
]

_CKPT = re.compile(r"^ckpt-(\d{8})$")
_TMP_PREFIX = ".ckpt-"


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


def _fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically and durably.

    A temporary file in the same directory is written, fsynced, renamed onto
    ``path``, and the directory is fsynced so the rename itself is on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(payload, tmp, metadata=metadata)
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, required: tuple[str, ...] | list[str] = ()
) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``; raises naming ``path`` when it is missing or unreadable.

    ``required``: keys the file must hold; a ``KeyError`` lists the missing
    ones and the keys found (a garbage ``rng.safetensors`` fails here, not at
    the first lookup).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError) on bad files
        raise ValueError(f"{path}: expected a safetensors file, could not read it ({type(e).__name__}: {e})") from e
    missing = [k for k in required if k not in tensors]
    if missing:
        raise KeyError(f"{path}: missing required tensors {missing}; the file holds {sorted(tensors)}")
    return tensors


def check_state_shapes(expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Raise unless ``loaded`` has exactly the keys of ``expected``, each of the same shape.

    ``source`` names where ``loaded`` came from (a file path, "policy.safetensors
    of ckpt-00000012"). A ``KeyError`` lists missing and unexpected keys; a
    ``ValueError`` names the first key whose shape differs with both shapes
    (and counts the others).
    """
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{source}: state keys do not match: missing {missing}, unexpected {unexpected}")
    wrong = [k for k in expected if tuple(loaded[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more: {wrong[1:6]})" if len(wrong) > 1 else ""
        raise ValueError(
            f"{source}: tensor {k!r} has shape {tuple(loaded[k].shape)}, expected {tuple(expected[k].shape)}{more}"
        )


def save_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically and durably (fsynced file, renamed, directory fsynced); ``sort_keys=False`` keeps the mappings' order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=sort_keys)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: expected a JSON file, could not parse it ({type(e).__name__}: {e})") from e


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

    Older checkpoints beyond ``keep_last`` are removed after the new one is in
    place; temporary directories left by killed writes are removed first.
    Only one process may write under ``root`` at a time (rank 0).
    """
    if not isinstance(iteration, int) or not 0 <= iteration < 10**8:
        raise ValueError(f"iteration must be an int in [0, 10**8) (the ckpt-XXXXXXXX name), got {iteration!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
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


def checkpoint_iteration(path: str | os.PathLike) -> int:
    """The iteration of a checkpoint directory named ``ckpt-XXXXXXXX`` (8 digits); raises on any other name."""
    name = Path(path).name
    match = _CKPT.match(name)
    if match is None:
        raise ValueError(f"checkpoint path must name a 'ckpt-XXXXXXXX' directory (8 digits), got {os.fspath(path)!r}")
    return int(match.group(1))


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove the ``.ckpt-*`` temporary directories a killed :func:`write_checkpoint_dir` left under ``root``.

    Returns the removed paths. Call it when no write is in progress (at the
    start of a run; :func:`write_checkpoint_dir` calls it before each write).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    stale = sorted(p for p in root.iterdir() if p.name.startswith(_TMP_PREFIX) and p.is_dir() and not p.is_symlink())
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale
