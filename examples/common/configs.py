"""Config groups of the core's swappable parts, shared by the example jobs.

Each option is a flat dataclass whose fields are the keyword arguments of its
``_target_``, so ``hydra.utils.instantiate(cfg.<group>)`` builds it:

  schedule:    one_step_per_frame | all_steps | sliding_window | progressive_window | no_steps   (rldiff.stochasticity)
  lr_schedule: linear | constant        (torch.optim.lr_scheduler, built from the optimizer: _partial_)
  parallel:    none | ddp | fsdp2       (rldiff.parallel: gradient sync across torchrun processes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


# ----------------------------------------------------------------------------- schedule
@dataclass
class OneStepPerFrameConf:
    """AR-Drag's selective stochasticity: one SDE step per frame."""

    _target_: str = "rldiff.stochasticity.OneStepPerFrame"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic


@dataclass
class AllStepsConf:
    """Every step stochastic (Flow-GRPO, DanceGRPO)."""

    _target_: str = "rldiff.stochasticity.AllSteps"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic


@dataclass
class SlidingWindowConf:
    """A window of consecutive stochastic steps (MixGRPO, Flow-GRPO-Fast)."""

    _target_: str = "rldiff.stochasticity.SlidingWindow"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic
    window: int = 2  # stochastic steps per frame
    steps: Any = None  # [lo, hi]: the window lies within steps lo..hi-1 (Flow-GRPO-Fast); None: all allowed steps


@dataclass
class ProgressiveWindowConf:
    """MixGRPO's progressive window: moves ``stride`` steps every ``interval`` iterations."""

    _target_: str = "rldiff.stochasticity.ProgressiveWindow"
    exclude_last: bool = True  # never make the last (sigma -> 0) step stochastic
    window: int = 2  # stochastic steps per frame
    interval: int = 25  # iterations between moves
    stride: int = 1  # steps per move
    steps: Any = None  # [lo, hi]: the range the window moves through; None: all allowed steps
    roll_back: bool = True  # after the end of the range start again (MixGRPO) or stay at the last position


@dataclass
class NoStepsConf:
    """Pure ODE (evaluation only: nothing to train)."""

    _target_: str = "rldiff.stochasticity.NoSteps"


# ----------------------------------------------------------------------------- lr_schedule
@dataclass
class LinearLRConf:
    """The lr falls linearly from its start value to 0 over the run (PPO's annealing)."""

    _target_: str = "torch.optim.lr_scheduler.LinearLR"
    _partial_: bool = True  # built by the trainer from its optimizer
    start_factor: float = 1.0  # lr multiplier at iteration 0
    end_factor: float = 0.0  # lr multiplier at total_iters and after
    total_iters: Any = "${run.iterations}"  # iterations to reach end_factor (default: the run's length)


@dataclass
class ConstantLRConf:
    """A constant lr."""

    _target_: str = "torch.optim.lr_scheduler.ConstantLR"
    _partial_: bool = True  # built by the trainer from its optimizer
    factor: float = 1.0  # lr multiplier
    total_iters: int = 0  # iterations at factor before the full lr (0: from the start)


# ----------------------------------------------------------------------------- parallel
@dataclass
class NoParallelConf:
    """Replicated model, gradients averaged by one flat all-reduce after backward."""

    _target_: str = "rldiff.parallel.ManualAllReduce"


@dataclass
class DDPConf:
    """torch DistributedDataParallel (replicated model, bucketed all-reduce during backward)."""

    _target_: str = "rldiff.parallel.DDP"
    bucket_cap_mb: float = 25.0  # gradient bucket size
    find_unused_parameters: bool = False  # tolerate parameters a forward does not reach


@dataclass
class FSDP2Conf:
    """torch FSDP2 (fully_shard on the policy root, optionally per block; sharded parameters, gradients, optimizer state)."""

    _target_: str = "rldiff.parallel.FSDP2"
    block_lists: list[str] = field(default_factory=list)  # ModuleLists whose blocks are own units (see fsdp2_blocks)
    reshard_after_forward: bool = True  # free gathered block weights after forward
    block_methods: list[str] = field(default_factory=lambda: ["causal_forward", "causal_cross_kv"])  # block methods FSDP2 hooks besides forward (CausalWan's)
    param_dtype: str | None = None  # compute dtype of the gathered weights (bfloat16: bf16 compute on fp32 sharded master weights)
    reduce_dtype: str | None = "float32"  # dtype of the gradient reduce-scatter (None: param_dtype)


@dataclass
class FSDP2BlocksConf(FSDP2Conf):
    """FSDP2 with each CausalWan transformer block of the GRPO policy its own unit, then the root (the GRPO job only)."""

    block_lists: list[str] = field(default_factory=lambda: ["model.transformer.blocks"])  # the FlowPolicy's CausalWan blocks


def register(cs: ConfigStore | None = None) -> None:
    """Register the ``schedule``, ``lr_schedule`` and ``parallel`` groups."""
    cs = cs or ConfigStore.instance()
    for name, node in (("one_step_per_frame", OneStepPerFrameConf), ("all_steps", AllStepsConf), ("sliding_window", SlidingWindowConf), ("progressive_window", ProgressiveWindowConf), ("no_steps", NoStepsConf)):
        cs.store(group="schedule", name=name, node=node)
    cs.store(group="lr_schedule", name="linear", node=LinearLRConf)
    cs.store(group="lr_schedule", name="constant", node=ConstantLRConf)
    for name, node in (("none", NoParallelConf), ("ddp", DDPConf), ("fsdp2", FSDP2Conf), ("fsdp2_blocks", FSDP2BlocksConf)):
        cs.store(group="parallel", name=name, node=node)
