"""Small torch.distributed helpers; every function is a no-op on a single process."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank", "world_size", "all_gather_cat", "all_reduce_mean_", "average_gradients", "any_flag"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order). Every rank must pass the same shape."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


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
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
