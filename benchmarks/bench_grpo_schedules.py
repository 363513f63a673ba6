"""GRPO update cost with OneStepPerFrame (AR-Drag's selective stochasticity) vs AllSteps, at N = 3 and N = 8.

For each N, the same tiny CausalWan FlowPolicy (same initial weights) is
trained for a few iterations by ``rldiff.trainer.GRPOTrainer`` through the env
(default CPU world: Sprites-Drag 32x32 x 8 frames, PixelCodec, trajectory hinge
reward over Lucas-Kanade) under each schedule. Printed per (N, schedule):
stochastic steps per rollout S, and the median per-iteration CPU time of the
update (recompute of the S means in one parallel pass + backward + step) and
of the collection; then the update-cost ratio AllSteps / OneStepPerFrame.
With the last step excluded, AllSteps has S = F * (N - 1) and
OneStepPerFrame S = F, so the recompute covers N - 1 times more noisy frames.

    python benchmarks/bench_grpo_schedules.py [--iterations 4] [--controls 2] [--group 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import gymnasium
import torch

import envs
from policies import CausalWan, FlowPolicy
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rldiff.flow import EulerMaruyamaStep
from rldiff.stochasticity import AllSteps, OneStepPerFrame
from rldiff.trainer import GRPOTrainer


class _CpuTimed:
    """Wraps a callable and accumulates the process CPU time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - start


def measure(policy, num_steps: int, schedule, args) -> dict[str, float]:
    """Median CPU seconds per iteration of the update and the collection, and S."""
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=args.controls * args.group, vectorization_mode="vector_entry_point", num_steps=num_steps)
    collector = envs.EnvCollector(venv)
    trainer = GRPOTrainer(
        policy, collector, venv.world.control_source, schedule, lr=1e-5, num_controls=args.controls, group_size=args.group, seed=0
    )
    trainer.update = update = _CpuTimed(trainer.update)
    collector.collect = collect = _CpuTimed(collector.collect)
    stochastic_steps = None
    updates, collects = [], []
    for it in range(args.iterations + 1):  # iteration 0 warms up
        update.seconds = collect.seconds = 0.0
        metrics = trainer.step()
        if it == 0:
            stochastic_steps = int(schedule.mask(venv.world.num_frames, num_steps).sum())
            continue
        if metrics["updates"] != 1.0:
            raise SystemExit(f"an update was skipped: {metrics}")
        updates.append(update.seconds)
        collects.append(collect.seconds)
    return {"S": stochastic_steps, "update": statistics.median(updates), "collect": statistics.median(collects)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--controls", type=int, default=2, help="B")
    parser.add_argument("--group", type=int, default=4, help="G")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = FlowPolicy(CausalWan.tiny(), ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32)), step=EulerMaruyamaStep(1.0))
    r = args.controls * args.group
    print(f"default world F=8, R={r} (B={args.controls}, G={args.group}), CausalWan.tiny, one minibatch, "
          f"{args.iterations} timed iterations each, median CPU time per iteration, {args.threads} thread(s)")
    print(f"{'N':>3} {'schedule':<16} {'S':>4} {'update ms':>10} {'collect ms':>11}")
    for num_steps in (3, 8):
        results = {}
        for schedule in (OneStepPerFrame(), AllSteps()):
            res = measure(copy.deepcopy(base), num_steps, schedule, args)
            results[type(schedule).__name__] = res
            print(f"{num_steps:>3} {type(schedule).__name__:<16} {res['S']:>4} {res['update'] * 1e3:>10.1f} {res['collect'] * 1e3:>11.1f}")
        one, every = results["OneStepPerFrame"], results["AllSteps"]
        print(f"    N={num_steps}: update cost AllSteps / OneStepPerFrame = {every['update'] / one['update']:.2f}x "
              f"(S ratio {every['S'] / one['S']:.0f}x); collection {every['collect'] / one['collect']:.2f}x")


if __name__ == "__main__":
    main()
