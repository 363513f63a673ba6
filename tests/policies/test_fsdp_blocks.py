"""FSDP2 per block on 2 gloo processes: each CausalWan transformer block its own ``fully_shard`` unit, then the root.

The sharded update (with activation checkpointing on) equals the 1-process update on
the same global batch; the blocks really are separate units; checkpoints hold full
tensors; a bf16 ``MixedPrecisionPolicy`` runs (fp32 sharded master weights).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rldiff import distributed as dist_utils
from rldiff.parallel import FSDP2, ManualAllReduce
from rldiff.stochasticity import OneStepPerFrame
from rldiff.trainer import GRPOTrainer, compute_advantages

B, G, N = 2, 2, 3
BLOCKS = "model.transformer.blocks"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_trainer(parallel, checkpointing: bool = False, checkpoint_dir=None) -> GRPOTrainer:
    import envs
    from policies import CausalWan, FlowPolicy
    from policies.codecs import PixelCodec
    from policies.conditioning import ControlEncoder
    from policies.text_encoder import HashTextEncoder
    from rldiff.flow import CPSStep

    model = CausalWan.tiny(window=3, text_dim=32, seed=3)
    model.checkpointing = checkpointing
    encoder = ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32, max_length=8))
    policy = FlowPolicy(model, encoder, step=CPSStep(0.7), cond_seed=5)
    env = envs.ARVideoDenoisingVectorEnv(num_envs=B * G, num_steps=N)
    return GRPOTrainer(
        policy, envs.EnvCollector(env), env.world.control_source, OneStepPerFrame(), lr=1e-3, num_controls=B, group_size=G,
        clip_range=0.2, max_grad_norm=100.0, parallel=parallel, checkpoint_dir=checkpoint_dir, seed=0,
    )  # fmt: skip


def global_batch():
    trainer = make_trainer(ManualAllReduce())
    with torch.no_grad():
        return trainer.collect()


def one_update(trainer: GRPOTrainer, rank: int, world: int, batch) -> dict:
    rollout, control = batch
    per = G // world
    rows = torch.tensor([b * G + rank * per + i for b in range(B) for i in range(per)])
    rollout = rollout[rows]
    adv = compute_advantages(rollout, trainer.gamma, trainer.norm_eps, trainer.adv_clip)
    metrics = trainer.update(rollout, control, adv)
    flat = torch.cat([t.flatten().float() for t in trainer.parallel.full_state(trainer.trainable_state().items()).values()])
    return {"params": flat, "grad_norm": torch.tensor(metrics["grad_norm"])}


def worker(rank: int, port: int, out_dir: str, batch):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        from torch.distributed.fsdp import FSDPModule

        trainer = make_trainer(FSDP2(block_lists=[BLOCKS]), checkpointing=True, checkpoint_dir=os.path.join(out_dir, "ckpt"))
        units = [isinstance(b, FSDPModule) for b in trainer.policy.model.transformer.blocks]
        got = one_update(trainer, rank, 2, batch)
        got["units"] = torch.tensor(units)
        trainer.save_checkpoint()
        torch.save(got, os.path.join(out_dir, f"blocks{rank}.pt"))
        bf16 = make_trainer(FSDP2(block_lists=[BLOCKS], param_dtype="bfloat16"))
        m = bf16.update(*_local(bf16, rank, batch))
        master = {p.dtype for p in bf16.params}
        torch.save({"grad_norm": torch.tensor(m["grad_norm"]), "fp32_master": torch.tensor(master == {torch.float32})}, os.path.join(out_dir, f"bf16{rank}.pt"))
        # LoRA under per-block FSDP2: only adapters train, and save_lora gathers them to full tensors
        from policies.lora import BaseReference, add_lora, save_lora

        lora = make_trainer(ManualAllReduce())  # a plain policy, then adapters, then sharding
        policy = lora.policy
        add_lora(policy.model, rank=2)
        lora = GRPOTrainer(
            policy, lora.collector, lora.controls, OneStepPerFrame(), lr=1e-2, num_controls=B, group_size=G, kl_coef=0.1,
            reference=BaseReference(policy), parallel=FSDP2(block_lists=[BLOCKS]), seed=0,
        )  # fmt: skip
        m = lora.update(*_local(lora, rank, batch))
        save_lora(policy.model, os.path.join(out_dir, "lora"), write=rank == 0)
        torch.save({"updates": torch.tensor(m["updates"]), "trainable": torch.tensor(len(lora.params))}, os.path.join(out_dir, f"lora{rank}.pt"))
    finally:
        dist_utils.destroy()


def _local(trainer, rank, batch):
    rollout, control = batch
    rows = torch.tensor([b * G + rank for b in range(B)])
    rollout = rollout[rows]
    return rollout, control, compute_advantages(rollout, trainer.gamma, trainer.norm_eps, trainer.adv_clip)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp_blocks")
    mp.spawn(worker, args=(free_port(), str(out), global_batch()), nprocs=2, join=True)
    return out


def test_per_block_fsdp2_with_checkpointing_makes_the_one_process_update(two_process_run):
    reference = one_update(make_trainer(ManualAllReduce()), rank=0, world=1, batch=global_batch())
    for rank in range(2):
        got = torch.load(two_process_run / f"blocks{rank}.pt", weights_only=True)
        assert got["units"].all()  # every transformer block is its own fully_shard unit
        assert torch.allclose(got["grad_norm"], reference["grad_norm"], rtol=1e-4), (got["grad_norm"], reference["grad_norm"])
        # Adam's first step moves every weight by ~lr = 1e-3 whatever its gradient's size, so gradients
        # near 0 that differ in the last bits (sharded sums in another order) move 2 of 189k weights by ~2e-6
        diff = (got["params"] - reference["params"]).abs()
        assert diff.max() < 1e-5 and (diff > 1e-6).sum() < 10, (diff.max(), (diff > 1e-6).sum())


def test_per_block_checkpoint_holds_full_tensors(two_process_run):
    from rldiff.checkpoint import latest_checkpoint, load_tensors

    saved = load_tensors(latest_checkpoint(two_process_run / "ckpt") / "policy.safetensors")
    plain = make_trainer(ManualAllReduce()).policy
    for name, p in plain.named_parameters():
        assert saved[name].shape == p.shape, name


def test_lora_under_per_block_fsdp2_saves_full_adapters(two_process_run):
    from safetensors.torch import load_file

    for rank in range(2):
        got = torch.load(two_process_run / f"lora{rank}.pt", weights_only=True)
        assert got["updates"] == 1.0 and got["trainable"] == 2 * 10 * 2  # A and B of 10 projections (4 self-, 4 text-attention, 2 FFN) in 2 blocks
    adapters = load_file(str(two_process_run / "lora" / "adapter_model.safetensors"))
    a = adapters["blocks.0.attn1.to_q.lora_A.weight"]
    assert a.shape == (2, 64)  # rank x dim: full, not a shard


def test_bf16_mixed_precision_policy_keeps_fp32_master_weights(two_process_run):
    for rank in range(2):
        got = torch.load(two_process_run / f"bf16{rank}.pt", weights_only=True)
        assert bool(got["fp32_master"]) and torch.isfinite(got["grad_norm"]) and got["grad_norm"] > 0
