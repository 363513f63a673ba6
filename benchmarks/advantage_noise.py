"""Where does the spread inside a GRPO group come from? Training rollouts of the bundled student, side by side.

GRPO credits a rollout's stochastic steps with its group-normalized reward, so
only the spread those steps cause is signal. This prints, per frame, the
within-group std of each reward term for rollouts that

- start from their own initial noise and take no stochastic step (ODE): the
  spread no action caused;
- start from their own noise with the job's schedule (the old default);
- share one initial noise per group with the job's schedule (``grpo.shared_noise``).

and, for the trajectory term, the within-group correlation of frame t with
frame t-1 as the hinge (``trajectory/value``) and as its increments
(``trajectory``, ``reward.increments=true``): a chained
tracker's error accumulates, so without increments frame t's score is mostly
the earlier frames' luck. Same controls, schedule mask and generator seeds in
every row. About 10 seconds on 2 cores.

    python benchmarks/advantage_noise.py
    python benchmarks/advantage_noise.py --controls 8 --group 8 grpo.kl_coef=0.03   # any job override after the flags
"""

from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize
from hydra.utils import instantiate

import examples.ar_drag_grpo  # noqa: F401  (registers the job's configs)
from envs import ARVideoDenoisingVectorEnv, EnvCollector


def within_group(values: torch.Tensor, b: int, g: int) -> torch.Tensor:
    """``[R, F]`` -> group-centred ``[B, G, F]``."""
    v = values.reshape(b, g, -1)
    return v - v.mean(1, keepdim=True)


def neighbour_corr(centred: torch.Tensor) -> list[float]:
    """Correlation of frame t with frame t-1 over all rollouts, for t >= 2 (frame 0 has no spread)."""
    out = []
    for t in range(2, centred.shape[-1]):
        a, c = centred[..., t].flatten(), centred[..., t - 1].flatten()
        out.append(float((a * c).mean() / (a.std(correction=0) * c.std(correction=0) + 1e-12)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--controls", type=int, default=8, help="B, training controls")
    parser.add_argument("--group", type=int, default=8, help="G, rollouts per control")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="ar_drag_grpo overrides (policy, reward, schedule)")
    args = parser.parse_args()
    with initialize(config_path=None, version_base=None):
        cfg = compose("ar_drag_grpo", overrides=[*args.overrides, "reward.increments=true"])
    b, g = args.controls, args.group
    codec, controls = instantiate(cfg.codec), instantiate(cfg.controls)
    policy = instantiate(cfg.policy, codec=codec, step=cfg.step)  # the step config is instantiated inside (a dataclass object passed in would be read as a config)
    reward = instantiate(cfg.reward, tracker=instantiate(cfg.tracker))
    env = ARVideoDenoisingVectorEnv(b * g, control_source=controls, codec=codec, reward=reward, num_steps=policy.num_steps, shift=policy.shift)
    gen = torch.Generator().manual_seed(args.seed)
    control = controls.sample(b, gen)
    f, n = env.num_frames, env.num_steps
    mask = instantiate(cfg.schedule).mask(f, n, gen)  # [F, N]
    cases = {
        "own noise, ODE": (False, torch.zeros(f, n, dtype=torch.bool)),
        "own noise, schedule": (False, mask),
        "shared noise, schedule": (True, mask),
    }
    print(f"within-group std per frame ({b} controls x {g} rollouts, schedule {cfg.schedule._target_.rsplit('.', 1)[-1]})\n")
    print("| rollouts | term | " + " | ".join(f"t={t}" for t in range(f)) + " |")
    print("|---|---|" + "---|" * f)
    terms = {}
    with torch.no_grad():
        for name, (shared, m) in cases.items():
            rollout = EnvCollector(env, shared_noise=shared).collect(policy, control, g, m, torch.Generator().manual_seed(args.seed + 1))
            terms[name] = {k: within_group(v, b, g) for k, v in rollout["reward_terms"].items()}
            for term in ("trajectory/value", "quality"):
                centred = terms[name][term]
                print(f"| {name} | {term} | " + " | ".join(f"{float(x):.3f}" for x in centred.std(1, correction=0).mean(0)) + " |")
    print("\nwithin-group correlation of the trajectory term of frame t with frame t-1\n")
    print("| rollouts | scored as | " + " | ".join(f"t={t}" for t in range(2, f)) + " |")
    print("|---|---|" + "---|" * (f - 2))
    for name in ("own noise, schedule", "shared noise, schedule"):
        for label, values in (("hinge", terms[name]["trajectory/value"]), ("increments", terms[name]["trajectory"])):
            print(f"| {name} | {label} | " + " | ".join(f"{x:.2f}" for x in neighbour_corr(values)) + " |")


if __name__ == "__main__":
    main()
