"""Checks every job runs on its settings before it builds or writes anything.

- :func:`require` / :func:`check_finite`: a setting outside its range (or a NaN anywhere in the
  config) is an error naming the setting, what is allowed and what came in;
- :func:`pin_settings`: a run directory belongs to one set of settings. The first start writes
  them to ``settings.json``; a resume with different ones (another seed, other evaluation
  settings, another reward ...) is refused, naming each difference, instead of mixing two runs
  in one directory. Settings that may change on resume (the run's length, logging, the
  number of processes) are left out.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from rldiff import distributed as dist_utils
from rldiff.checkpoint import load_json, save_json

__all__ = ["SettingError", "require", "check_finite", "pin_settings", "flatten"]


class SettingError(ValueError):
    """A setting that makes a run meaningless or that conflicts with the run directory."""


def require(name: str, value, *, kind: type = int, low=None, high=None, allow_none: bool = False) -> None:
    """Raise :class:`SettingError` unless ``value`` is a ``kind`` in ``[low, high]`` (``None`` allowed with ``allow_none``)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = " and ".join(b for b in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if b)
        what = {int: "an int", float: "a finite number", bool: "a bool"}.get(kind, kind.__name__)
        raise SettingError(f"{name} must be {what}{' ' + bounds if bounds else ''}{' or null' if allow_none else ''}, got {value!r}")


def flatten(node, prefix: str = "") -> dict:
    """``{"a.b.c": value}`` of a config (interpolations resolved)."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    out = {}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        return {prefix: node}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_finite(cfg) -> None:
    """Every number in the config must be finite: a NaN or inf setting (``shift=nan``) never makes sense."""
    for key, value in flatten(cfg).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(f"{key} must be a finite number, got {value}")


def pin_settings(run_dir: str | os.PathLike, cfg, free: tuple[str, ...], hints: dict[str, str] | None = None) -> None:
    """Write the run's settings on its first start; refuse a resume whose settings differ (see module doc).

    ``free``: prefixes of settings that may change between starts (``"run.iterations"``, ``"dist"``).
    ``hints``: a sentence to add when a given setting differs (how to resume on purpose).
    """
    path = Path(run_dir) / "settings.json"
    now = {k: v for k, v in flatten(cfg).items() if not any(k == f or k.startswith(f + ".") for f in free)}
    if path.exists():
        saved = load_json(path)
        keys = sorted(set(saved) | set(now))
        diff = [f"{k}: {saved.get(k, '(unset)')!r} in the run, {now.get(k, '(unset)')!r} now" for k in keys if saved.get(k, "(unset)") != now.get(k, "(unset)")]
        if diff:
            extra = "".join(f" {text}" for key, text in (hints or {}).items() if saved.get(key) != now.get(key))
            raise SettingError(
                f"{path.parent} holds a run with other settings ({'; '.join(diff)}). Resuming would mix two runs in one "
                f"directory: rerun with the run's settings, or start a new run directory (hydra.run.dir=...).{extra}"
            )
    elif dist_utils.rank() == 0:
        save_json(path, now)
