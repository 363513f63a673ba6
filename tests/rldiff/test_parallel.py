"""DDP and FSDP2 (``fully_shard``) on 2 gloo processes give the 1-process update; full checkpoints cross world sizes."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rldiff import distributed as dist_utils
from rldiff.checkpoint import latest_checkpoint, load_tensors
from rldiff.parallel import DDP, FSDP2, ManualAllReduce
from rldiff.stochasticity import AllSteps
from rldiff.toy import NoControlSource, ToyCollector, ToyFlowModel, ToyPolicy
from rldiff.trainer import GRPOTrainer, compute_advantages

B, G = 2, 4  # 8 rollouts in the global batch
STRATEGIES = {"manual": ManualAllReduce, "ddp": DDP, "fsdp2": FSDP2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_trainer(parallel, checkpoint_dir=None) -> GRPOTrainer:
    torch.manual_seed(0)  # same initial weights everywhere
    policy = ToyPolicy(ToyFlowModel(hidden=16))
    return GRPOTrainer(
        policy, ToyCollector(num_steps=4), NoControlSource(), AllSteps(), lr=1e-2, num_controls=B, group_size=G,
        epochs=2, minibatch_size=None, clip_range=0.2, max_grad_norm=100.0, parallel=parallel, checkpoint_dir=checkpoint_dir,
    )  # fmt: skip


def global_batch():
    """The same 8 rollouts wherever it runs: a plain policy with seed-0 weights, fixed noise and mask."""
    torch.manual_seed(0)
    policy = ToyPolicy(ToyFlowModel(hidden=16))
    collector = ToyCollector(num_steps=4)
    mask = AllSteps().mask(1, 4, torch.Generator().manual_seed(1))  # [F=1, N=4]
    with torch.no_grad():
        return collector.collect(policy, NoControlSource().sample(B), G, mask, torch.Generator().manual_seed(2))


def local_rows(rank: int, world: int) -> torch.Tensor:
    """Rank ``rank`` holds G / world rollouts of every group (groups span ranks)."""
    per = G // world
    return torch.tensor([b * G + rank * per + i for b in range(B) for i in range(per)])


def one_update(trainer: GRPOTrainer, rank: int, world: int) -> dict:
    rollout = global_batch()[local_rows(rank, world)]
    adv = compute_advantages(rollout, trainer.gamma, trainer.norm_eps, trainer.adv_clip)
    metrics = trainer.update(rollout, NoControlSource().sample(B), adv)
    flat = torch.cat([t.flatten() for t in trainer.parallel.full_state(trainer.trainable_state().items()).values()])
    return {"params": flat, "grad_norm": torch.tensor(metrics["grad_norm"]), "updates": torch.tensor(metrics["updates"])}


def worker(rank: int, port: int, out_dir: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        for name, cls in STRATEGIES.items():
            got = one_update(make_trainer(cls()), rank, 2)
            torch.save(got, os.path.join(out_dir, f"{name}{rank}.pt"))
        # FSDP2: a full step and a checkpoint written from sharded state
        trainer = make_trainer(FSDP2(), checkpoint_dir=os.path.join(out_dir, "ckpt2"))
        trainer.step()
        trainer.save_checkpoint()
        # a checkpoint written by 1 process loads into 2 sharded processes
        resumed = make_trainer(FSDP2(), checkpoint_dir=os.path.join(out_dir, "ckpt1"))
        assert resumed.resume()
        state = resumed.parallel.full_state(resumed.trainable_state().items())
        opt = resumed.parallel.full_optimizer_state(resumed.optimizer)
        if rank == 0:
            torch.save({"state": state, "exp_avg0": opt["state"][0]["exp_avg"], "iteration": resumed.iteration}, os.path.join(out_dir, "from1.pt"))
        resumed.step()  # and trains on (writing ckpt-00000002)
    finally:
        dist_utils.destroy()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    single = make_trainer(ManualAllReduce(), checkpoint_dir=out / "ckpt1")
    single.step()
    single.save_checkpoint()  # for the 1 -> 2 processes load
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_two_processes_make_the_one_process_update(two_process_run, name):
    reference = one_update(make_trainer(ManualAllReduce()), rank=0, world=1)  # all 8 rollouts on one process
    for rank in range(2):
        got = torch.load(two_process_run / f"{name}{rank}.pt", weights_only=True)
        assert got["updates"] == 2.0  # 2 epochs, one minibatch each
        # the synchronized gradient norm is the global one (a missing 1/world would double it)
        assert torch.allclose(got["grad_norm"], reference["grad_norm"], rtol=1e-5), (got["grad_norm"], reference["grad_norm"])
        assert torch.allclose(got["params"], reference["params"], atol=1e-6)
    assert not torch.allclose(reference["params"], torch.cat([p.detach().flatten() for p in make_trainer(ManualAllReduce()).params]))


def test_checkpoint_from_two_sharded_processes_loads_into_one_and_continues(two_process_run):
    ckpt = latest_checkpoint(two_process_run / "ckpt2")
    saved = load_tensors(ckpt / "policy.safetensors")
    assert saved["model.net.0.weight"].shape == (16, 18)  # full, not a [8, 18] shard
    trainer = make_trainer(ManualAllReduce(), checkpoint_dir=two_process_run / "ckpt2")
    assert trainer.resume() and trainer.iteration == 1
    for name, p in trainer.trainable_state().items():
        assert torch.equal(p.detach(), saved[name])
    before = [p.detach().clone() for p in trainer.params]
    metrics = trainer.step()
    assert trainer.iteration == 2 and metrics["updates"] == 2.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_checkpoint_from_one_process_loads_into_two_sharded_processes(two_process_run):
    got = torch.load(two_process_run / "from1.pt", weights_only=True)
    ckpt = two_process_run / "ckpt1" / "ckpt-00000001"  # (the 2-process run then wrote ckpt-00000002 beside it)
    written, optimizer = load_tensors(ckpt / "policy.safetensors"), load_tensors(ckpt / "optimizer_policy.safetensors")
    assert got["iteration"] == 1
    assert set(got["state"]) == set(written)
    assert all(torch.equal(got["state"][k], written[k]) for k in written)
    assert torch.equal(got["exp_avg0"], optimizer["0.exp_avg"])
