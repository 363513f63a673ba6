"""GRPO rollouts per second: 2 torchrun processes vs 1 process, side by side in one run.

The AR-Drag GRPO iteration of ``examples/ar_drag_grpo.py`` (bundled Sprites-Drag
student, pixel codec, trajectory + quality reward, OneStepPerFrame) on a fixed
global batch of B*G rollouts; a rollout counts when it has been collected,
scored and used in the update. Measured, each in its own subprocess:

  1 process, 1 thread | 1 process, 2 threads | torchrun 2 processes x 1 thread (gloo, each parallel strategy)
  and, when CUDA is present, torchrun over all GPUs (nccl, one process per GPU).

    python benchmarks/bench_distributed.py              # prints rollouts/s and ratios
    python benchmarks/bench_distributed.py --iterations 5 --group-size 8
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One rank of the measurement (or the only process): prints ``ROLLOUTS_PER_S <x>`` on rank 0."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from envs import ARVideoDenoisingVectorEnv, EnvCollector
    from examples.ar_drag.components import CPSStepConf, LucasKanadeConf, SpritesRewardConf, SpritesStudentConf
    from rldiff import distributed as dist_utils
    from rldiff import parallel
    from rldiff.data.sprites import SpritesDrag
    from rldiff.stochasticity import OneStepPerFrame
    from rldiff.trainer import GRPOTrainer
    from policies.codecs import PixelCodec

    dist_utils.init_from_env(timeout_s=600)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() and dist_utils.comm_device().type == "cuda" else None
    codec = PixelCodec(factor=4)
    policy = instantiate(OmegaConf.structured(SpritesStudentConf), codec=codec, step=OmegaConf.structured(CPSStepConf))
    reward = instantiate(OmegaConf.structured(SpritesRewardConf), tracker=instantiate(OmegaConf.structured(LucasKanadeConf)))
    if device is not None:
        policy.to(device)
    controls = SpritesDrag(32, 8)
    local = args.num_controls * args.group_size // dist_utils.world_size()
    env = ARVideoDenoisingVectorEnv(local, control_source=controls, codec=codec, reward=reward, num_steps=policy.num_steps, shift=policy.shift)
    strategy = {"none": parallel.ManualAllReduce, "ddp": parallel.DDP, "fsdp2": parallel.FSDP2}[args.parallel]()
    trainer = GRPOTrainer(policy, EnvCollector(env), controls, OneStepPerFrame(), lr=3e-4, num_controls=args.num_controls, group_size=args.group_size, minibatch_size=None, parallel=strategy)
    trainer.step()  # warm-up
    dist_utils.barrier()
    start = time.perf_counter()
    for _ in range(args.iterations):
        trainer.step()
    dist_utils.barrier()
    elapsed = time.perf_counter() - start
    if dist_utils.rank() == 0:
        print(f"ROLLOUTS_PER_S {args.num_controls * args.group_size * args.iterations / elapsed:.4f}", flush=True)
    dist_utils.destroy()


def measure(label: str, cmd: list[str], threads: int, timeout: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    found = re.search(r"ROLLOUTS_PER_S ([0-9.]+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    print(f"{label:<48} {float(found.group(1)):8.2f} rollouts/s", flush=True)
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help="internal: run one measurement")
    parser.add_argument("--parallel", default="none", choices=["none", "ddp", "fsdp2"])
    parser.add_argument("--iterations", type=int, default=3, help="timed GRPO iterations (after one warm-up)")
    parser.add_argument("--num-controls", type=int, default=2, help="B")
    parser.add_argument("--group-size", type=int, default=8, help="G (divisible by the process count)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per measurement")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    me = [str(Path(__file__).resolve()), "--worker", "--iterations", str(args.iterations), "--num-controls", str(args.num_controls), "--group-size", str(args.group_size)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    print(f"GRPO iteration on the bundled Sprites-Drag student, global batch B*G = {args.num_controls * args.group_size}, {args.iterations} timed iterations")
    one_1 = measure("1 process, OMP_NUM_THREADS=1", [sys.executable, *me], 1, args.timeout)
    one_2 = measure("1 process, OMP_NUM_THREADS=2", [sys.executable, *me], 2, args.timeout)
    two = {p: measure(f"torchrun 2 processes x 1 thread, parallel={p}", [*torchrun, "--nproc_per_node=2", *me, "--parallel", p], 1, args.timeout) for p in ("none", "ddp", "fsdp2")}
    for p, rate in two.items():
        print(f"ratio 2 processes ({p}) / 1 process 1 thread:  {rate / one_1:.2f}")
        print(f"ratio 2 processes ({p}) / 1 process 2 threads: {rate / one_2:.2f}")

    import torch

    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        gpu_one = measure("1 GPU (nccl, torchrun 1 process)", [*torchrun, "--nproc_per_node=1", *me, "--parallel", "ddp"], 4, args.timeout)
        if gpus > 1:
            gpu_all = measure(f"{gpus} GPUs (nccl, torchrun {gpus} processes)", [*torchrun, f"--nproc_per_node={gpus}", *me, "--parallel", "ddp"], 4, args.timeout)
            print(f"ratio {gpus} GPUs / 1 GPU: {gpu_all / gpu_one:.2f}")
    else:
        print("no CUDA here: GPU measurement skipped")


if __name__ == "__main__":
    main()
