"""Small torch.distributed helpers; every function is a no-op on a single process.

:func:`init_from_env` starts the process group from the variables ``torchrun``
sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
with a timeout: a collective that waits longer than ``timeout_s`` for a dead or
hung peer raises instead of blocking forever.
"""

from __future__ import annotations

import datetime
import gc
import os
from typing import Iterable

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "destroy", "broadcast_str", "broadcast_module_", "barrier", "is_distributed", "rank", "world_size", "rank_seed", "all_gather_cat", "all_reduce_mean_", "average_gradients", "any_flag"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None, timeout_s: float = 300.0) -> bool:
    """Join the process group described by torchrun's environment; returns whether one was started.

    A no-op (``False``) without ``WORLD_SIZE`` > 1 or when a group already exists.
    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``; with
    CUDA the process uses device ``LOCAL_RANK``. ``timeout_s`` bounds how long any
    collective waits for the other ranks (a dead or hung rank makes the others fail).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def destroy() -> None:
    """Leave the process group (no-op without one).

    Unreachable wrappers (DDP, FSDP2) that still hold the group are collected
    first: gloo aborted the process ("terminate called without an active
    exception") now and then when such a wrapper outlived the group.
    """
    if is_distributed():
        gc.collect()
        dist.destroy_process_group()


def broadcast_str(text: str) -> str:
    """Rank 0's ``text`` on every rank (UTF-8 bytes in tensors, no pickling; identity on one process)."""
    if not is_distributed():
        return text
    device = comm_device()
    data = torch.tensor(list(text.encode()) if rank() == 0 else [], dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], device=device)
    dist.broadcast(size, src=0)
    buf = data if rank() == 0 else torch.empty(int(size), dtype=torch.uint8, device=device)
    dist.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode()


def broadcast_module_(module: torch.nn.Module) -> torch.nn.Module:
    """Overwrite ``module``'s parameters and buffers with rank 0's (replicas start identical)."""
    if is_distributed():
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                buf = t.data.to(comm_device())
                dist.broadcast(buf, src=0)
                t.data.copy_(buf)
    return module


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if is_distributed():
        dist.barrier()


def comm_device() -> torch.device:
    """Where collective buffers live: the current CUDA device under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


RANK_SEED_STRIDE = 1_000_003  # a prime: the streams of ranks and of seeds next to each other do not collide


def rank_seed(seed: int, rank_index: int | None = None) -> int:
    """A distinct, reproducible seed per rank: ``seed + 1_000_003 * rank`` (rank 0 keeps ``seed``, so one process is unchanged)."""
    return int(seed) + RANK_SEED_STRIDE * (rank() if rank_index is None else int(rank_index))


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order). Every rank must pass the same shape."""
    if not is_distributed():
        return x
    y = x.to(comm_device()).contiguous()
    parts = [torch.empty_like(y) for _ in range(world_size())]
    dist.all_gather(parts, y)
    return torch.cat(parts, dim=0).to(x.device)


def all_reduce_mean_(x: torch.Tensor) -> torch.Tensor:
    """In-place mean of ``x`` over ranks."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x.div_(world_size())
    return x


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks (parameters without a gradient count as zero)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    all_reduce_mean_(flat)
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def any_flag(flag: bool) -> bool:
    """True if ``flag`` is true on any rank."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
