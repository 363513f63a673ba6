"""Data-parallel strategies for the trainers: manual all-reduce, DDP, FSDP2 (``fully_shard``).

A strategy turns a policy into a :class:`PolicyRunner` (a thin ``nn.Module``
whose ``forward(rollout, control)`` is the policy's differentiable
``recompute`` and whose ``collect(...)`` runs a no-grad collection), and owns
everything that depends on how parameters are laid out across ranks:

- :class:`ManualAllReduce` — plain replicas; gradients averaged by one flat
  ``all_reduce`` after backward (the default; exactly the single-process
  behaviour on one process).
- :class:`DDP` — the runner is wrapped in ``torch.nn.parallel.DistributedDataParallel``;
  recomputing goes through DDP's ``forward``, so DDP's bucketed all-reduce
  hooks average the gradients during backward.
- :class:`FSDP2` — ``fully_shard`` on each block of named ``nn.ModuleList``s
  (its own unit), then on the runner (root), with a ``MixedPrecisionPolicy``; parameters, gradients and optimizer state
  are sharded ``DTensor``s at rest; ``collect`` is registered as an FSDP forward
  method so rollouts all-gather parameters like a forward does.

Other trainers (the distiller) build their own runner modules, one forward per
backward, and hand them to ``strategy.wrap_module(runner, methods)``; a frozen
shadow of a trained module (an EMA) follows its layout with ``shard_like``.

Checkpoints hold FULL (unsharded) tensors under the policy's own parameter
names and the optimizer's parameter indices, whatever the strategy or the
number of processes, so a run saved by K processes loads into any other count.
Frozen modules (KL reference, distillation teacher) stay replicated.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from rldiff import distributed as dist_utils

__all__ = ["PolicyRunner", "ManualAllReduce", "DDP", "FSDP2", "local_tensor", "ema_decay_warmup", "ema_update_"]


def _dtype(name: str, value: str | torch.dtype | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"FSDP2: {name} must be a floating dtype name (float32, bfloat16, float16) or None, got {value!r}")
    return dtype


class PolicyRunner(nn.Module):
    """``forward(rollout, control)`` = ``policy.recompute``; ``collect`` = ``collector.collect(policy, ...)`` without gradients."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, rollout, control) -> Tensor:
        return self.policy.recompute(rollout, control)

    def collect(self, collector, control, group_size: int, mask: Tensor, generator: torch.Generator | None = None):
        with torch.no_grad():
            return collector.collect(self.policy, control, group_size, mask, generator)


def _full(t: Tensor) -> Tensor:
    """The full tensor of a (possibly sharded) ``DTensor``; collective for a DTensor."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _like(full: Tensor, ref: Tensor) -> Tensor:
    """``full`` laid out like ``ref`` (sharded the same way when ``ref`` is a DTensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(ref, DTensor):
        return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
    return full.to(ref.device)


def local_tensor(t: Tensor) -> Tensor:
    """This rank's shard of a ``DTensor`` (in-place ops on it update the DTensor); ``t`` itself otherwise."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def ema_decay_warmup(decay: float, updates: int) -> float:
    """EMA decay after ``updates`` earlier updates: ``min(decay, (1 + n) / (10 + n))``.

    Without the warm-up a short run's EMA would still hold mostly the initial
    weights (0.99^60 = 0.55 of them after 60 updates at decay 0.99).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    return min(decay, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def ema_update_(ema: nn.Module, module: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * module``, parameter by parameter (this rank's shards under FSDP2)."""
    for e, p in zip(ema.parameters(), module.parameters(), strict=True):
        local_tensor(e).lerp_(local_tensor(p).to(e.dtype), 1.0 - decay)


class ManualAllReduce:
    """Replicated parameters; gradients averaged by a flat all-reduce after each backward."""

    def wrap(self, policy: nn.Module) -> nn.Module:
        """The runner of ``policy`` (call it for means, ``.collect`` for rollouts)."""
        return PolicyRunner(policy)

    def wrap_module(self, runner: nn.Module, methods: tuple[str, ...] = ()) -> nn.Module:
        """``runner`` made ready for training: call it for the differentiable forward (one per backward),
        and ``runner_module(wrapped).<method>`` for each of ``methods`` (other uses of its parameters)."""
        return runner

    def shard_like(self, module: nn.Module, like: nn.Module) -> nn.Module:
        """``module`` (a copy of ``like``, e.g. an EMA) with each parameter laid out like ``like``'s of the same name."""
        return module

    def runner_module(self, runner: nn.Module) -> PolicyRunner:
        return runner

    def after_backward(self, params: list[nn.Parameter]) -> None:
        dist_utils.average_gradients(params)

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> Tensor:
        return _full(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def full_state(self, named: Iterable[tuple[str, Tensor]]) -> dict[str, Tensor]:
        """Full tensors of ``named`` (collective under FSDP2: call on every rank)."""
        return {n: _full(t.detach()) for n, t in named}

    def load_full_state(self, named: Iterable[tuple[str, Tensor]], state: dict[str, Tensor]) -> None:
        """Copy full tensors ``state`` into the (possibly sharded) tensors ``named``."""
        with torch.no_grad():
            for n, t in named:
                t.copy_(_like(state[n], t))

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """``optimizer.state_dict()`` with every state tensor full (collective under FSDP2)."""
        sd = optimizer.state_dict()
        sd["state"] = {pid: {k: _full(v) if isinstance(v, Tensor) else v for k, v in s.items()} for pid, s in sd["state"].items()}
        return sd

    def load_full_optimizer_state(self, optimizer: torch.optim.Optimizer, sd: dict) -> None:
        """Load a full optimizer state dict, sharding each state tensor like its parameter."""
        params = [p for g in optimizer.param_groups for p in g["params"]]
        state = {}
        for pid, s in sd["state"].items():
            p = params[int(pid)]
            state[pid] = {k: _like(v, p) if isinstance(v, Tensor) and v.shape == p.shape else v for k, v in s.items()}
        optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


class DDP(ManualAllReduce):
    """``DistributedDataParallel`` around the runner: DDP's backward hooks average the gradients.

    Args:
        bucket_cap_mb: DDP gradient bucket size.
        find_unused_parameters: let DDP skip parameters a recompute does not reach.
    """

    def __init__(self, bucket_cap_mb: float = 25.0, find_unused_parameters: bool = False):
        self.bucket_cap_mb, self.find_unused_parameters = bucket_cap_mb, find_unused_parameters

    def wrap(self, policy: nn.Module) -> nn.Module:
        return self.wrap_module(PolicyRunner(policy))

    def wrap_module(self, runner: nn.Module, methods: tuple[str, ...] = ()) -> nn.Module:
        """``DistributedDataParallel(runner)``; ``methods`` run on the inner module (parameters are replicated)."""
        if not dist_utils.is_distributed():
            return runner
        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None: inputs (TensorDicts, controls) are passed through untouched; DDP
        # broadcasts rank 0's parameters at construction, so replicas start identical
        return DistributedDataParallel(runner, device_ids=None, bucket_cap_mb=self.bucket_cap_mb, find_unused_parameters=self.find_unused_parameters, broadcast_buffers=False)

    def runner_module(self, runner: nn.Module) -> PolicyRunner:
        return getattr(runner, "module", runner)

    def after_backward(self, params: list[nn.Parameter]) -> None:
        """Nothing to do: DDP reduced the gradients during backward."""


class FSDP2(ManualAllReduce):
    """``fully_shard`` (FSDP2): each block of the ``block_lists`` ``nn.ModuleList``s its own unit, then the runner as root.

    A block unit all-gathers its parameters just for its own forward (and again in
    backward), so at most one block is unsharded at a time. FSDP2's hooks run on a
    module's ``__call__`` and on the methods registered with
    ``register_fsdp_forward_method``: a model that runs its blocks through other
    methods names them in ``block_methods`` (``policies.CausalWan`` gives every
    block ``causal_forward`` and ``causal_cross_kv``; block list ``"model.transformer.blocks"``
    of a ``FlowPolicy``). With ``block_lists`` empty the whole policy is one unit.

    Args:
        block_lists: names of ``nn.ModuleList``s inside the policy (e.g. ``"model.transformer.blocks"``) whose elements to shard separately.
        reshard_after_forward: free gathered block parameters after each forward (saves memory, costs an all-gather in backward).
        block_methods: methods of a block that use its weights besides ``forward`` (registered when the block has them).
        param_dtype: dtype of the gathered parameters, i.e. of forward/backward compute (``None``: as stored;
            ``"bfloat16"``: bf16 compute on float32 sharded master weights and optimizer state).
        reduce_dtype: dtype of the gradient reduce-scatter (``None``: ``param_dtype``).
    """

    def __init__(
        self, block_lists: tuple[str, ...] | list[str] = (), reshard_after_forward: bool = True,
        block_methods: tuple[str, ...] | list[str] = ("causal_forward", "causal_cross_kv"), param_dtype: str | None = None, reduce_dtype: str | None = "float32",
    ):  # fmt: skip
        self.block_lists, self.reshard_after_forward, self.block_methods = tuple(block_lists), reshard_after_forward, tuple(block_methods)
        self.param_dtype, self.reduce_dtype = _dtype("param_dtype", param_dtype), _dtype("reduce_dtype", reduce_dtype)

    def mp_policy(self):
        """The ``MixedPrecisionPolicy`` of every unit (``param_dtype`` compute, ``reduce_dtype`` gradient reduction)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=self.reduce_dtype)

    def wrap(self, policy: nn.Module) -> nn.Module:
        runner = PolicyRunner(policy)
        if not dist_utils.is_distributed():
            return runner
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        # FSDP2 shards each rank's copy as it is: start every rank from rank 0's weights
        with torch.no_grad():
            for t in list(policy.parameters()) + list(policy.buffers()):
                torch.distributed.broadcast(t.data, src=0)
        mp = self.mp_policy()
        for name in self.block_lists:
            blocks = policy.get_submodule(name)
            if not isinstance(blocks, nn.ModuleList):
                raise TypeError(f"FSDP2 block_lists: {name!r} must name an nn.ModuleList in the policy, got {type(blocks).__name__}")
            for block in blocks:
                fully_shard(block, reshard_after_forward=self.reshard_after_forward, mp_policy=mp)
                for method in self.block_methods:
                    if hasattr(block, method):
                        register_fsdp_forward_method(block, method)
        fully_shard(runner, reshard_after_forward=self.reshard_after_forward, mp_policy=mp)
        register_fsdp_forward_method(runner, "collect")
        return runner

    def wrap_module(self, runner: nn.Module, methods: tuple[str, ...] = ()) -> nn.Module:
        """``fully_shard(runner)`` as one unit (from rank 0's weights); each of ``methods`` is registered
        as an FSDP forward method, so it all-gathers the parameters like ``forward`` does."""
        if self.block_lists:
            raise ValueError(f"FSDP2 block_lists apply to policies passed to wrap(); wrap_module shards the runner {type(runner).__name__} as one unit, got block_lists={list(self.block_lists)}")
        if not dist_utils.is_distributed():
            return runner
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        with torch.no_grad():
            for t in list(runner.parameters()) + list(runner.buffers()):
                torch.distributed.broadcast(t.data, src=0)
        fully_shard(runner, reshard_after_forward=self.reshard_after_forward, mp_policy=self.mp_policy())
        for name in methods:
            register_fsdp_forward_method(runner, name)
        return runner

    def shard_like(self, module: nn.Module, like: nn.Module) -> nn.Module:
        """Replace ``module``'s parameters by DTensors sharded like ``like``'s (local shards line up for ``lerp_``)."""
        refs = dict(like.named_parameters())
        for name, p in list(module.named_parameters()):
            if name not in refs:
                raise KeyError(f"shard_like: parameter {name!r} of module has no counterpart in like")
            owner, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(owner), leaf, nn.Parameter(_like(p.detach(), refs[name]), requires_grad=p.requires_grad))
        return module

    def after_backward(self, params: list[nn.Parameter]) -> None:
        """Nothing to do: FSDP2 reduce-scattered (averaged) the gradients during backward."""
