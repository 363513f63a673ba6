"""One resumable run state for every training loop: GRPO, the distillation stages, the toy job.

A run state names what a loop must get back after a kill: modules (saved as
full tensors, gathered from FSDP2 shards), optimizers, learning-rate
schedulers, random generators and a little JSON. :meth:`RunState.save` writes
it as one atomic checkpoint directory ``<root>/ckpt-<iteration:08d>/``
(:func:`rldiff.checkpoint.write_checkpoint_dir`)::

    <module>.safetensors                       full state_dict of each module
    optimizer_<name>.safetensors / .json       tensors / the rest of each optimizer's state
    scheduler_<name>.json                      each lr scheduler's state_dict
    rng.safetensors                            shared/<name> (one per run), local/<name> [world, L] (one per rank), torch
    state.json                                 iteration, world_size, seed and the caller's meta

``frozen`` modules (a KL reference) are written once, to ``<root>/<name>.safetensors``.
Generators come in two kinds: *shared* ones draw what every rank must agree on
(controls, masks); *local* ones draw each rank's noise and are seeded
``rank_seed(seed)``. A run resumed on another number of processes keeps the
shared streams and re-seeds the local ones (distinct per rank and iteration).
Call ``save`` and ``resume`` on every rank (gathering full tensors is a
collective under FSDP2); rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from rldiff import distributed as dist_utils
from rldiff.checkpoint import (
    check_state_shapes,
    checkpoint_iteration,
    latest_checkpoint,
    load_json,
    load_tensors,
    optimizer_state_from_tensors,
    optimizer_to_tensors,
    save_tensors,
    write_checkpoint_dir,
)

__all__ = ["RunState", "load_policy_weights", "find_checkpoint"]

RESEED_STRIDE = 7919  # local generators re-seeded on another world size: seed + 7919 * iteration


class RunState:
    """What a training loop saves and resumes (see module doc).

    Args:
        root: the checkpoint directory (``<run>/checkpoints``).
        modules: ``{name: module}`` saved every checkpoint (full ``state_dict``).
        optimizers: ``{name: optimizer}``.
        schedulers: ``{name: lr scheduler}`` (``torch.optim.lr_scheduler``; state as JSON).
        shared_generators: ``{name: generator}`` equal on every rank.
        local_generators: ``{name: (generator, seed)}`` one stream per rank; ``seed`` is that rank's seed.
        frozen: ``{name: module}`` written once to ``root`` (and loaded back on resume).
        parallel: the :mod:`rldiff.parallel` strategy (full tensors from shards); default plain.
        seed: the run's seed (recorded in ``state.json``).
        keep_last: complete checkpoints kept.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, object] | None = None,
        shared_generators: Mapping[str, torch.Generator] | None = None,
        local_generators: Mapping[str, tuple[torch.Generator, int]] | None = None,
        frozen: Mapping[str, nn.Module] | None = None,
        parallel=None,
        seed: int = 0,
        keep_last: int = 2,
    ):
        from rldiff.parallel import ManualAllReduce

        self.root = Path(root)
        self.modules, self.optimizers, self.schedulers = dict(modules), dict(optimizers or {}), dict(schedulers or {})
        self.shared_generators, self.local_generators = dict(shared_generators or {}), dict(local_generators or {})
        self.frozen, self.seed, self.keep_last = dict(frozen or {}), int(seed), int(keep_last)
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        names = [*self.modules, *self.frozen]
        if len(set(names)) != len(names):
            raise ValueError(f"RunState: module names must be unique across modules and frozen, got {names}")

    # ------------------------------------------------------------------ save
    def save(self, iteration: int, meta: Mapping | None = None) -> Path | None:
        """Write checkpoint ``iteration`` atomically; returns its path on rank 0, ``None`` elsewhere."""
        local = {name: dist_utils.all_gather_cat(gen.get_state().unsqueeze(0)) for name, (gen, _) in self.local_generators.items()}  # [world, L]
        files = {f"{name}.safetensors": self.parallel.full_state(m.state_dict().items()) for name, m in self.modules.items()}
        optimizers = {name: self.parallel.full_optimizer_state(opt) for name, opt in self.optimizers.items()}
        if dist_utils.rank() != 0:
            return None
        for name, module in self.frozen.items():
            if not (self.root / f"{name}.safetensors").exists():
                save_tensors(self.root / f"{name}.safetensors", module.state_dict())
        for name, state in optimizers.items():
            files[f"optimizer_{name}.safetensors"], files[f"optimizer_{name}.json"] = optimizer_to_tensors(state)
        for name, scheduler in self.schedulers.items():
            files[f"scheduler_{name}.json"] = scheduler.state_dict()
        rng = {f"shared/{name}": gen.get_state() for name, gen in self.shared_generators.items()}
        rng.update({f"local/{name}": states for name, states in local.items()})
        rng["torch"] = torch.get_rng_state()
        files["rng.safetensors"] = rng
        files["state.json"] = {**dict(meta or {}), "iteration": int(iteration), "world_size": dist_utils.world_size(), "seed": self.seed}
        return write_checkpoint_dir(self.root, iteration, files, keep_last=self.keep_last)

    # ------------------------------------------------------------------ resume
    def resume(self) -> dict | None:
        """Load the newest checkpoint under ``root``; returns its ``state.json`` (``iteration`` ...) or ``None`` when there is none."""
        path = latest_checkpoint(self.root)
        if path is None:
            return None
        state = load_json(path / "state.json")
        missing = sorted(k for k in ("iteration", "world_size") if not isinstance(state, dict) or k not in state)
        if missing:
            raise KeyError(f"{path / 'state.json'}: missing {missing}; the checkpoint is damaged or from another kind of run")
        iteration = int(state["iteration"])
        if iteration != checkpoint_iteration(path):
            raise ValueError(f"{path / 'state.json'} says iteration {iteration}, its directory {path.name} says {checkpoint_iteration(path)}: the checkpoint is damaged")
        for name, module in {**self.modules, **self.frozen}.items():
            file = (path if name in self.modules else self.root) / f"{name}.safetensors"
            if name in self.frozen and not file.exists():
                continue  # written with the first checkpoint of a run that had none yet
            loaded, own = load_tensors(file), module.state_dict(keep_vars=True)
            check_state_shapes(own, loaded, file)  # names missing / unexpected keys, or the key whose shape differs
            self.parallel.load_full_state(own.items(), loaded)  # shards the full tensors under FSDP2
        for name, opt in self.optimizers.items():
            tensors, rest = load_tensors(path / f"optimizer_{name}.safetensors"), load_json(path / f"optimizer_{name}.json")
            self.parallel.load_full_optimizer_state(opt, optimizer_state_from_tensors(tensors, rest))
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(load_json(path / f"scheduler_{name}.json"))
        keys = [f"shared/{n}" for n in self.shared_generators] + [f"local/{n}" for n in self.local_generators] + ["torch"]
        rng = load_tensors(path / "rng.safetensors", required=keys)
        for name, gen in self.shared_generators.items():
            gen.set_state(rng[f"shared/{name}"])
        same_world = int(state["world_size"]) == dist_utils.world_size()
        for name, (gen, seed) in self.local_generators.items():
            if same_world:
                gen.set_state(rng[f"local/{name}"][dist_utils.rank()].clone())  # a copy: set_state ignores a view's storage offset
            else:  # another number of processes: fresh, distinct per-rank noise streams
                gen.manual_seed(seed + RESEED_STRIDE * iteration)
        torch.set_rng_state(rng["torch"])
        return state


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` names: a ``ckpt-*`` directory, a checkpoint root, or a run directory (its newest)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    for root in (path, path / "checkpoints"):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise FileNotFoundError(f"no checkpoint at {path}: expected a ckpt-<iteration> directory with state.json, or a run / checkpoints directory holding one")


def load_policy_weights(checkpoint: str | os.PathLike, module: str = "policy", prefix: str = "model.") -> dict[str, Tensor]:
    """The trained model's weights in a run's checkpoint, ready for ``model.load_state_dict``.

    ``checkpoint`` is a ``ckpt-*`` directory, a checkpoint root or a run
    directory (its newest checkpoint). The GRPO trainer saves its policy
    (``FlowPolicy``) as ``policy.safetensors``; ``prefix`` (``"model."``,
    ``FlowPolicy.model``) is stripped, so the result loads into the
    ``CausalWan`` the policy wraps. ``prefix=""`` keeps every key.
    """
    path = find_checkpoint(checkpoint) / f"{module}.safetensors"
    state = load_tensors(path)
    if prefix:
        outside = sorted(k for k in state if not k.startswith(prefix))
        if outside:
            raise ValueError(f"load_policy_weights: {path} has keys outside {prefix!r} ({outside[:3]}); pass prefix='' to keep every key")
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state
