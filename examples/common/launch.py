"""Running the example jobs under ``torchrun``: process group, shared Hydra run directory, parallel strategy, failures.

``launch(entry)`` is what an example's ``__main__`` calls instead of its Hydra
entry. On one process it only calls ``entry()``. Under ``torchrun`` (``WORLD_SIZE`` > 1) it

1. joins the process group before Hydra starts (``dist.backend``, ``dist.timeout_s``
   read from the command line: Hydra has not composed the config yet);
2. makes every rank use rank 0's run directory: Hydra names it after the wall clock,
   which ranks read at slightly different moments, so rank 0's timestamp is
   broadcast and passed as ``hydra.run.dir`` / ``hydra.sweep.dir`` (unless given);
   ranks other than 0 do not write ``.hydra/``;
3. with :func:`failing_clearly` around the job, a failed collective (a rank died, or
   hung past ``dist.timeout_s``) becomes an error naming the rank and how to resume
   (Hydra reports it and exits non-zero).

Its settings are the ``dist`` fields (:class:`DistConf`); the ``parallel`` group is in
:mod:`examples.common.configs`.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from omegaconf import OmegaConf

from rldiff import distributed as dist_utils


@dataclass
class DistConf:
    """Process-group settings (used under torchrun only)."""

    backend: str | None = None  # nccl | gloo (None: nccl with CUDA, else gloo)
    timeout_s: float = 300.0  # a collective waiting longer than this for a dead or hung rank fails the job


def is_main() -> bool:
    """Whether this process writes logs, plots, videos and tables (rank 0)."""
    return dist_utils.rank() == 0


def dist_settings(argv: list[str]) -> DistConf:
    """The ``dist.*`` overrides on the command line over the defaults (a typo is an error)."""
    given = [a[len("dist.") :] for a in argv if a.startswith("dist.")]
    merged = OmegaConf.merge(OmegaConf.structured(DistConf), OmegaConf.from_dotlist(given))
    return DistConf(**OmegaConf.to_container(merged))


def shared_dir_overrides(argv: list[str], stamp: str, rank: int) -> list[str]:
    """Overrides that give every rank the same run/sweep directory (named after rank 0's ``stamp``)."""
    extra = []
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        extra.append(f"hydra.run.dir=outputs/{stamp}")
    if not any(a.startswith("hydra.sweep.dir=") for a in argv):
        extra.append(f"hydra.sweep.dir=multirun/{stamp}")
    if rank != 0:
        extra.append("hydra.output_subdir=null")
    return extra


class DistributedJobError(RuntimeError):
    """A collective failed: another rank died, or hung past ``dist.timeout_s``."""


def is_collective_failure(err: BaseException) -> bool:
    """A torch.distributed error (NCCL/store/network) or a gloo transport error (peer gone, timeout)."""
    from torch.distributed import DistError

    return isinstance(err, DistError) or "gloo" in str(err)


@contextmanager
def failing_clearly(timeout_s: float):
    """Re-raise a failed collective as :class:`DistributedJobError` naming this rank and how to resume."""
    try:
        yield
    except RuntimeError as err:
        if not dist_utils.is_distributed() or not is_collective_failure(err):
            raise
        first = (str(err).splitlines() or [""])[0][:300]
        raise DistributedJobError(
            f"rank {dist_utils.rank()} of {dist_utils.world_size()}: a collective failed ({type(err).__name__}: {first}); "
            f"another rank died or hung past dist.timeout_s={timeout_s}. Re-run the same command to resume from the last checkpoint."
        ) from err


def launch(entry) -> None:
    """Run a Hydra ``entry`` on one process or as one rank of a torchrun job (see module doc)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        entry()
        return
    settings = dist_settings(sys.argv[1:])
    dist_utils.init_from_env(settings.backend, settings.timeout_s)
    stamp = dist_utils.broadcast_str(time.strftime("%Y-%m-%d/%H-%M-%S"))
    sys.argv += shared_dir_overrides(sys.argv[1:], stamp, dist_utils.rank())
    entry()
    dist_utils.destroy()
