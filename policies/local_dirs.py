"""Checks for local model directories (every model loads from a local path, never the network)."""

from __future__ import annotations

import os

__all__ = ["require_local_dir"]


def require_local_dir(path: str | os.PathLike, what: str, files: tuple[str, ...], any_of: tuple[str, ...] = ()) -> str:
    """Return ``path`` as a string after checking it is a directory holding the expected files.

    ``files`` must all exist; of ``any_of`` (weights in one file or sharded) at
    least one must exist. The error names ``what`` is being loaded, the path,
    and the missing file.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{what}: local directory {path!r} does not exist (expected a directory holding {', '.join(files + any_of)})"
        )
    for name in files:
        if not os.path.isfile(os.path.join(path, name)):
            raise FileNotFoundError(f"{what}: expected file {name!r} in {path!r}, not found")
    if any_of and not any(os.path.isfile(os.path.join(path, name)) for name in any_of):
        raise FileNotFoundError(f"{what}: expected one of {list(any_of)} in {path!r}, found none")
    return path
