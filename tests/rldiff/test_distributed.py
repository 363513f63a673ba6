"""Group statistics and updates across 2 gloo processes (CPU)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rldiff.rollout import RolloutRecorder
from rldiff.trainer import compute_advantages

B, G, F = 3, 4, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rollout_rows(rows: torch.Tensor, rewards: torch.Tensor):
    """A rollout TensorDict holding the given global rows (group = row // G)."""
    rec = RolloutRecorder(group=rows // G, control_index=rows // G)
    z = torch.zeros(len(rows), 2)
    rec.record_step(0, 0, 1.0, 0.5, z, z, z, 0.5, torch.zeros(len(rows)))
    for m in range(F):
        rec.record_frame(z, rewards[rows, m])
    return rec.build()


def global_rewards():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(B * G, F, generator=g)
    r[G : 2 * G] = 1.0  # group 1 has zero variance
    r[2 * G + 1, 0] = float("nan")  # group 2 is poisoned
    return r


def worker(rank: int, port: int, out_dir: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        rewards = global_rewards()
        # each rank holds half of every group: rows b*G + [0, 1] on rank 0, b*G + [2, 3] on rank 1
        rows = torch.tensor([b * G + rank * (G // 2) + i for b in range(B) for i in range(G // 2)])
        adv = compute_advantages(rollout_rows(rows, rewards), gamma=0.5, eps=1e-4, adv_clip=5.0)
        torch.save({"rows": rows, "frame": adv.frame, "valid": adv.valid, "counts": (adv.num_groups, adv.nonfinite_groups, adv.zero_variance_groups)}, os.path.join(out_dir, f"rank{rank}.pt"))

        # a full trainer iteration on 2 ranks keeps the replicas identical (gradients averaged)
        from rldiff.stochasticity import OneStepPerFrame
        from rldiff.toy import NoControlSource, ToyCollector, ToyFlowModel, ToyPolicy
        from rldiff.trainer import GRPOTrainer

        torch.manual_seed(0)  # same initial weights on both ranks
        policy = ToyPolicy(ToyFlowModel(hidden=32))
        trainer = GRPOTrainer(policy, ToyCollector(num_steps=4), NoControlSource(), OneStepPerFrame(), lr=1e-3, num_controls=2, group_size=4, minibatch_size=2)
        metrics = trainer.step()
        flat = torch.cat([p.detach().flatten() for p in policy.parameters()])
        torch.save({"params": flat, "metrics": metrics}, os.path.join(out_dir, f"train{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_group_statistics_and_updates_across_two_processes(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    single = compute_advantages(rollout_rows(torch.arange(B * G), global_rewards()), gamma=0.5, eps=1e-4, adv_clip=5.0)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["frame"], single.frame[got["rows"]], atol=1e-6)
        assert torch.equal(got["valid"], single.valid[got["rows"]])
        assert got["counts"] == (3, 1, 1)
    # poisoned group 2 is excluded on both ranks, zero-variance group 1 gets zero advantage
    assert not single.valid[2 * G :].any() and torch.equal(single.frame[G : 2 * G], torch.zeros(G, F))

    t0, t1 = (torch.load(tmp_path / f"train{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(t0["params"], t1["params"])
    assert t0["metrics"]["reward_mean"] == t1["metrics"]["reward_mean"]  # gathered over ranks
    assert t0["metrics"]["updates"] == 2.0
