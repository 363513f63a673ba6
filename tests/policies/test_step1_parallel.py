"""Distiller under DDP and FSDP2 on 2 gloo processes makes the 1-process updates on the same global batch.

Each rank holds half of the batch. For the check to be exact, the ranks' random
draws must be the rows the single process draws: every rank seeds the same
generator, and a per-row draw (first dimension = the local batch) is drawn at the
global batch size and sliced to the rank's rows (on one process that is the
plain draw). Draws shared by the batch (the exit steps ``[F]``) are untouched.
"""

import os
import socket
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tensordict import TensorDict

from policies.causal_wan import CausalWan
from policies.distill_rollouts import SelfRollout
from policies.step1 import Distiller, WorldBatch
from policies.teacher import BidirectionalWan, tiny_wan_config
from rldiff import distributed as dist_utils
from rldiff.flow import shifted_sigmas
from rldiff.parallel import DDP, FSDP2, ManualAllReduce

B, F = 4, 3  # global batch; F != B / 2 so the exit-step draw [F] is never mistaken for a per-row draw
STRATEGIES = {"ddp": DDP, "fsdp2": FSDP2}


def global_batch(seed: int) -> WorldBatch:
    g = torch.Generator().manual_seed(seed)
    cond = TensorDict({"text": torch.randn(B, 4, 32, generator=g), "frames": torch.randn(B, F, 100, 8, 8, generator=g)}, batch_size=[B])
    return WorldBatch(torch.randn(B, F, 48, 8, 8, generator=g).clamp(-1, 1), cond, None)


def local_batch(seed: int, rank: int, world: int) -> WorldBatch:
    full, rows = global_batch(seed), slice(rank * B // world, (rank + 1) * B // world)
    return WorldBatch(full.x0[rows], full.cond[rows], None)


@contextmanager
def rows_of_global_draws(rank: int, world: int):
    """Per-row draws (``torch.randn``/``torch.rand`` with a generator, first dim = B / world) become this rank's rows of a global draw."""
    local = B // world
    originals = {"randn": torch.randn, "rand": torch.rand}

    def sliced(fn):
        def draw(*size, generator=None, **kwargs):
            shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
            if generator is None or shape[0] != local:
                return fn(*size, generator=generator, **kwargs)
            return fn((B, *shape[1:]), generator=generator, **kwargs)[rank * local : (rank + 1) * local]

        return draw

    for name, fn in originals.items():
        setattr(torch, name, sliced(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


def three_iterations(teacher_dir: str, parallel, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Iterations 0 and 2: generator + critic updates (DDP checks its first reduction at the second
    forward); iteration 1: critic only, after a no-grad student rollout. Returns full flat states."""
    torch.manual_seed(0)
    teacher = BidirectionalWan.from_pretrained(teacher_dir)
    student = CausalWan.from_pretrained(teacher_dir, extra_in_channels=0, window=2)
    d = Distiller(student, teacher, SelfRollout(), shifted_sigmas(3, 3.0), lr_generator=1e-3, lr_critic=1e-3, generator_every=2, adv_weight=0.1, parallel=parallel)
    g = torch.Generator().manual_seed(0)
    with rows_of_global_draws(rank, world):
        for it in range(3):
            d.step(local_batch(it, rank, world), g)
    out = {}
    for name, module in (("student", d.student), ("critic", d.critic), ("head", d.head.mlp), ("ema", d.ema)):
        full = d.parallel.full_state(module.state_dict().items())  # collective under FSDP2
        out[name] = torch.cat([t.float().flatten() for t in full.values()])
    out["exp_avg_sq0"] = d.parallel.full_optimizer_state(d.opt_generator)["state"][0]["exp_avg_sq"].flatten()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, teacher_dir: str, out_dir: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        for name, cls in STRATEGIES.items():
            got = three_iterations(teacher_dir, cls(), rank, 2)
            torch.save(got, os.path.join(out_dir, f"{name}{rank}.pt"))
    finally:
        dist_utils.destroy()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill_parallel")
    torch.manual_seed(0)
    BidirectionalWan.from_config(tiny_wan_config(dim=32, heads=2, layers=2)).save_pretrained(out / "teacher")
    mp.spawn(worker, args=(free_port(), str(out / "teacher"), str(out)), nprocs=2, join=True)
    return out, three_iterations(str(out / "teacher"), ManualAllReduce(), rank=0, world=1)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_two_processes_make_the_one_process_distillation_updates(runs, name):
    out, reference = runs
    initial = CausalWan.from_pretrained(out / "teacher", extra_in_channels=0, window=2)
    moved = (reference["student"] - torch.cat([t.flatten() for t in initial.state_dict().values()])).abs().max()
    assert moved > 1e-4  # lr 1e-3: the generator update moved the student (AdamW's first step is ~lr per weight)
    for rank in range(2):
        got = torch.load(out / f"{name}{rank}.pt", weights_only=True)
        for key, ref in reference.items():
            assert got[key].shape == ref.shape, key  # full tensors, not shards
            # float sums over 2 + 2 rows vs 4 rows: ~3e-6 here; without gradient sync the states differ by ~2e-3
            assert torch.allclose(got[key], ref, rtol=1e-3, atol=2e-5), (name, rank, key, float((got[key] - ref).abs().max()))
