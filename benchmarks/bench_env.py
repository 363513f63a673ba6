"""Env rollout vs a bare loop making the same model calls: the env's overhead ratio (target <= 1.03).

Both sides run R = B * G episodes of the default CPU world (Sprites-Drag 32x32
x 8 frames, PixelCodec, trajectory hinge reward over Lucas-Kanade) with a tiny
CausalWan ``FlowPolicy`` and the OneStepPerFrame schedule:

- env: ``envs.EnvCollector(vector env).collect(...)``;
- bare: the same ``policy.act`` calls on a hand-kept snapshot, the same
  streaming decode and reward calls, the same ``RolloutRecorder``.

Both start from the same noise and controls and must return identical
rollouts (checked). Repetitions alternate between the two. The ratio is
taken on process CPU time (one thread: robust to other jobs on shared cores),
median over repetitions; wall-clock medians are printed too. Last, the wall
time of one default-world episode of the single env (``gymnasium.make`` with
no arguments, actions 0.5 * current latent).

    python benchmarks/bench_env.py [--reps 7] [--controls 2] [--group 4] [--layers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import torch
from tensordict import TensorDict

import envs
from envs.core import draw_noise, row_generators
from policies import CausalWan, FlowPolicy
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rldiff.flow import EulerMaruyamaStep
from rldiff.rollout import RolloutRecorder
from rldiff.stochasticity import OneStepPerFrame


def bare_rollout(policy, world, control, group_size: int, mask, seed: int, generator) -> TensorDict:
    """The same rollout without the env: snapshot, decode, reward and recording by hand."""
    r = control.batch_size * group_size
    f, n_steps = world.num_frames, world.num_steps
    snapshot = draw_noise(row_generators([seed + i for i in range(r)]), world.snapshot_shape)  # [R, F, C, H, W]
    rows_control = control.repeat_interleave(group_size)
    policy.reset(rows_control)
    decoder = world.codec.stream_decoder()
    world.reward.reset(rows_control)
    rows = torch.arange(r) // group_size  # [R]
    recorder = RolloutRecorder(group=rows, control_index=rows)
    sigmas = world.sigmas.tolist()
    stochastic = mask.tolist()
    for m in range(f):
        for n in range(n_steps):
            sde = stochastic[m][n]
            obs = TensorDict(
                {
                    "snapshot": snapshot,
                    "frame_index": torch.full((r,), m),
                    "step_index": torch.full((r,), n),
                    "sigma": torch.full((r,), sigmas[n]),
                    "sigma_next": torch.full((r,), sigmas[n + 1]),
                    "timestep": torch.full((r,), 1000.0 * sigmas[n]),
                },
                batch_size=[r],
            )
            latent = snapshot[:, m].clone() if sde else None
            out = policy.act(obs, stochastic=sde, generator=generator)
            snapshot[:, m] = out["action"]
            if sde:
                recorder.record_step(m, n, sigmas[n], sigmas[n + 1], latent, out["action"], out["mean"], out["std"], out["log_prob"])
            if n == n_steps - 1:
                scores = world.reward.step(decoder.decode_next(snapshot[:, m]))
                terms = {k: v[:, -1] for k, v in scores.items() if k != "reward"}
                recorder.record_frame(out["action"], scores["reward"][:, -1], terms)
    return recorder.build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--controls", type=int, default=2, help="B")
    parser.add_argument("--group", type=int, default=4, help="G")
    parser.add_argument("--layers", type=int, default=2, help="CausalWan.tiny layers")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # Build the policy and the env (the default CPU world)
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=args.controls * args.group, vectorization_mode="vector_entry_point")
    collector = envs.EnvCollector(venv)
    world = venv.world
    model = CausalWan.tiny(num_layers=args.layers)
    policy = FlowPolicy(model, ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32)), step=EulerMaruyamaStep(1.0))
    control = world.control_source.sample(args.controls, torch.Generator().manual_seed(0))
    mask = OneStepPerFrame().mask(world.num_frames, world.num_steps, torch.Generator().manual_seed(0))

    def run_env(seed: int) -> TensorDict:
        return collector.collect(policy, control, args.group, mask, torch.Generator().manual_seed(seed))

    def run_bare(seed: int) -> TensorDict:
        gen = torch.Generator().manual_seed(seed)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))  # what the collector derives from its generator
        return bare_rollout(policy, world, control, args.group, mask, noise_seed, gen)

    # Check: same seeds, same rollout
    a, b = run_env(123), run_bare(123)
    same = all(torch.equal(a.get(k), b.get(k)) for k in a.keys(include_nested=True, leaves_only=True))
    if not same:
        raise SystemExit("env and bare rollouts differ: the comparison would be meaningless")

    # Time, alternating
    cpu = {"env": [], "bare": []}
    wall = {"env": [], "bare": []}
    for rep in range(args.reps):
        for name, fn in (("env", run_env), ("bare", run_bare)) if rep % 2 == 0 else (("bare", run_bare), ("env", run_env)):
            c0, w0 = time.process_time(), time.perf_counter()
            fn(1000 + rep)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    med = {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in cpu}
    r, f, n = args.controls * args.group, world.num_frames, world.num_steps
    print(f"default world: F={f} N={n} latent={world.latent_shape} R={r} (B={args.controls}, G={args.group}); "
          f"CausalWan.tiny(num_layers={args.layers}); {args.reps} reps, {args.threads} thread(s); rollouts identical: {same}")
    for name, label in (("env", "env rollout (EnvCollector)"), ("bare", "bare loop (same calls)    ")):
        c, w = med[name]
        print(f"{label}  median CPU {c * 1e3:7.1f} ms ({c / (f * n) * 1e3:.2f} ms/step), wall {w * 1e3:7.1f} ms")
    print(f"overhead ratio env / bare = {med['env'][0] / med['bare'][0]:.3f} CPU time, "
          f"{med['env'][1] / med['bare'][1]:.3f} wall  (target <= 1.03)")

    # One default-world episode of the single env, zero-policy actions
    env = gymnasium.make(envs.ENV_ID)
    obs, _ = env.reset(seed=0)
    env.step(torch.zeros(world.latent_shape))  # warm-up
    episode = []
    for rep in range(3):
        obs, _ = env.reset(seed=rep)
        start = time.perf_counter()
        done = False
        while not done:
            obs, _, done, _, _ = env.step(0.5 * obs["snapshot"][int(obs["frame_index"])])
        episode.append(time.perf_counter() - start)
    print(f"single env, gymnasium.make(ENV_ID) default episode ({f * n} steps): median {statistics.median(episode) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
