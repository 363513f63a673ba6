"""FlowPolicy: acting (KV-cache path) and recompute (parallel path) agree; GRPO ratio is 1 on-policy.

Real parts throughout: tiny CausalWan (diffusers Wan), ControlEncoder over PixelCodec
and HashTextEncoder (the CPU world's weight-free text stand-in), Sprites-Drag controls,
and the env's EnvCollector.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from policies import CausalWan, FlowPolicy
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rldiff.data.sprites import SpritesDrag
from rldiff.flow import CPSStep, EulerMaruyamaStep, gaussian_log_prob, shifted_sigmas
from rldiff.protocols import Policy, RolloutPolicy
from rldiff.rollout import RolloutRecorder

F, N = 5, 3


STEPS = {"em": EulerMaruyamaStep(0.7), "em_cap": EulerMaruyamaStep(0.7, sigma_cap=0.99), "cps": CPSStep(0.7)}


def make_policy(window: int = 3, sink: int = 0, step: str = "em") -> FlowPolicy:
    model = CausalWan.tiny(window=window, sink=sink, text_dim=32, seed=1).eval()
    encoder = ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32, max_length=8))
    return FlowPolicy(model, encoder, step=STEPS[step], cond_seed=5)


def controls(batch: int, seed: int = 0):
    return SpritesDrag(image_size=32, num_frames=F).sample(batch, torch.Generator().manual_seed(seed))


def manual_rollout(policy: FlowPolicy, control, mask: torch.Tensor, seed: int = 0) -> TensorDict:
    """A minimal env: snapshot = finished | current | initial noise; records stochastic steps."""
    r = control.batch_size
    g = torch.Generator().manual_seed(seed)
    sigmas = shifted_sigmas(N, 3.0)
    snapshot = torch.randn(r, F, 48, 8, 8, generator=g)  # [R, F, C, H, W]
    policy.reset(control)
    rec = RolloutRecorder(group=torch.arange(r), control_index=torch.arange(r))
    for m in range(F):
        for n in range(N):
            obs = TensorDict(
                {
                    "snapshot": snapshot.clone(),
                    "frame_index": torch.full((r,), m),
                    "step_index": torch.full((r,), n),
                    "sigma": sigmas[n].expand(r),
                    "sigma_next": sigmas[n + 1].expand(r),
                    "timestep": 1000 * sigmas[n].expand(r),
                },
                batch_size=[r],
            )
            out = policy.act(obs, stochastic=bool(mask[m, n]), generator=g)
            if mask[m, n]:
                rec.record_step(m, n, sigmas[n], sigmas[n + 1], snapshot[:, m].clone(), out["action"], out["mean"], out["std"], out["log_prob"])
            snapshot[:, m] = out["action"]
        rec.record_frame(snapshot[:, m], torch.zeros(r))
    return rec.build()


def test_protocols_and_parameters():
    policy = make_policy()
    assert isinstance(policy, Policy) and isinstance(policy, RolloutPolicy)
    # the encoder is not a submodule: parameters() are exactly the model's
    assert [id(p) for p in policy.parameters()] == [id(p) for p in policy.model.parameters()]


def test_deterministic_step_is_ode_and_stochastic_step_logprob():
    policy = make_policy()
    control = controls(2)
    mask = torch.zeros(F, N, dtype=torch.bool)
    mask[0, 0] = True
    ro = manual_rollout(policy, control, mask)
    assert ro["steps"].batch_size == torch.Size([2, 1])
    std = ro["steps", "std"][:, 0]
    # peers' convention at sigma_0 = 1: g = 0.7 * sqrt(1 / (1 - sigma_1)), std = g * sqrt(1 - sigma_1) = 0.7
    assert torch.allclose(std, torch.full((2,), 0.7), rtol=1e-5)
    lp = gaussian_log_prob(ro["steps", "action"][:, 0], ro["steps", "mean"][:, 0], std)
    assert torch.allclose(lp, ro["steps", "log_prob"][:, 0], atol=1e-6)
    # the old cap 0.99: g = 0.7 * sqrt(1 / 0.01) = 7; std = g * sqrt(sigma_0 - sigma_1)
    s1 = float(shifted_sigmas(N, 3.0)[1])
    capped = manual_rollout(make_policy(step="em_cap"), control, mask)
    assert torch.allclose(capped["steps", "std"][:, 0], torch.full((2,), 7.0 * (1.0 - s1) ** 0.5), rtol=1e-5)
    # CPS: std = eta * sigma_1 and the mean is cps_step's
    cps = manual_rollout(make_policy(step="cps"), control, mask)
    assert torch.allclose(cps["steps", "std"][:, 0], torch.full((2,), 0.7 * s1), rtol=1e-5)
    last = torch.zeros(F, N, dtype=torch.bool)
    last[0, N - 1] = True
    with pytest.raises(ValueError, match="CPSStep.*sigma_next = 0 has std"):
        manual_rollout(make_policy(step="cps"), control, last)
    for bad in ("cps", 0.7, None):
        with pytest.raises(TypeError, match=f"FlowPolicy: step must be a stochastic step object .* got {type(bad).__name__}"):
            FlowPolicy(policy.model, policy.encoder, step=bad)


@pytest.mark.parametrize("sink,step", [(0, "em"), (1, "em"), (1, "em_cap"), (1, "cps")])
def test_recompute_matches_acting(sink, step):
    policy = make_policy(window=3, sink=sink, step=step)
    control = controls(3, seed=1)
    mask = torch.zeros(F, N, dtype=torch.bool)
    last = 1 if step == "cps" else 2  # CPS has no noise on the last step (sigma_next = 0)
    mask[[0, 1, 2, 3, 4], [1, 0, last, 1, 0]] = True  # one stochastic step per frame (AR-Drag), F = W + 2
    ro = manual_rollout(policy, control, mask)
    mean = policy.recompute(ro, control)
    assert mean.shape == ro["steps", "mean"].shape == (3, 5, 48, 8, 8)
    assert mean.requires_grad
    assert (mean - ro["steps", "mean"]).abs().max().item() <= 1e-4
    logp = gaussian_log_prob(ro["steps", "action"].flatten(0, 1), mean.flatten(0, 1), ro["steps", "std"].flatten())
    ratio = torch.exp(logp - ro["steps", "log_prob"].flatten())
    assert (ratio - 1).abs().max().item() <= 1e-5
    # the same rows in another order / as a subset see the same conditioning (seeded per row)
    sub = policy.recompute(ro[[2, 0]], control.index([2, 0]))
    assert (sub - mean[[2, 0]]).abs().max().item() <= 1e-5
    # gradients reach the weights
    mean.square().mean().backward()
    assert policy.model.transformer.proj_out.weight.grad.abs().sum().item() > 0


def test_recompute_with_env_collector():
    import envs

    policy = make_policy(window=7)
    env = envs.ARVideoDenoisingVectorEnv(num_envs=4, num_steps=N)
    collector = envs.EnvCollector(env)
    mask = torch.zeros(collector.num_frames, N, dtype=torch.bool)
    mask[:, 0] = True
    control = env.world.control_source.sample(2, torch.Generator().manual_seed(0))
    ro = collector.collect(policy, control, group_size=2, mask=mask, generator=torch.Generator().manual_seed(1))
    rows = control.repeat_interleave(2)
    with torch.no_grad():
        mean = policy.recompute(ro, rows)
    logp = gaussian_log_prob(ro["steps", "action"].flatten(0, 1), mean.flatten(0, 1), ro["steps", "std"].flatten())
    ratio = torch.exp(logp - ro["steps", "log_prob"].flatten())
    assert (ratio - 1).abs().max().item() <= 1e-5


def test_act_is_a_pure_function_of_the_observation():
    # acting at frame 2 after a fresh reset (cache empty) equals acting in sequence
    policy = make_policy()
    control = controls(2)
    g = torch.Generator().manual_seed(3)
    snapshot = torch.randn(2, F, 48, 8, 8, generator=g)
    obs = TensorDict(
        {"snapshot": snapshot, "frame_index": torch.full((2,), 2), "step_index": torch.zeros(2, dtype=torch.long),
         "sigma": torch.full((2,), 0.8), "sigma_next": torch.full((2,), 0.5), "timestep": torch.full((2,), 800.0)},
        batch_size=[2],
    )  # fmt: skip
    policy.reset(control)
    a = policy.act(obs, stochastic=False)["action"]
    obs0 = obs.clone()
    obs0["frame_index"] = torch.zeros(2, dtype=torch.long)
    policy.act(obs0, stochastic=False)  # frame 0 first, then jump to 2: frames 0, 1 are committed from the snapshot
    b = policy.act(obs, stochastic=False)["action"]
    obs_changed = obs.clone()
    obs_changed["snapshot"] = snapshot.clone()
    obs_changed["snapshot"][:, 0] += 1.0  # history changed: the cache must be rebuilt
    c = policy.act(obs_changed, stochastic=False)["action"]
    policy.reset(control)
    d = policy.act(obs_changed, stochastic=False)["action"]
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(c, d, atol=1e-6) and not torch.allclose(a, c, atol=1e-4)
    with pytest.raises(ValueError, match="same for every row"):
        bad = obs.clone()
        bad["frame_index"] = torch.tensor([1, 2])
        policy.act(bad, stochastic=False)
