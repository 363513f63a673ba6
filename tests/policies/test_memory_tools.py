"""Memory tools: activation checkpointing, bf16 compute, the conditioning memo, gradient accumulation.

Each tool must change memory, never the numbers: checkpointing gives the same
loss and gradients; bf16 acting and bf16 recompute stay on-policy (ratio 1 to
far inside the clip range); micro-batches give the minibatch's update; the
conditioning of a collected batch is encoded once per control.
"""

from __future__ import annotations

import copy

import pytest
import torch

import envs
from policies import CausalWan, FlowPolicy
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.teacher import BidirectionalWan, tiny_wan_config
from policies.text_encoder import HashTextEncoder
from rldiff.flow import CPSStep, gaussian_log_prob
from rldiff.stochasticity import OneStepPerFrame
from rldiff.trainer import GRPOTrainer

N = 3


def make_policy(compute_dtype: str = "float32", checkpointing: bool = False, seed: int = 1) -> FlowPolicy:
    model = CausalWan.tiny(window=3, sink=1, text_dim=32, seed=seed)
    model.checkpointing = checkpointing
    encoder = ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32, max_length=8))
    return FlowPolicy(model, encoder, step=CPSStep(0.7), cond_seed=5, compute_dtype=compute_dtype)


def collect(policy: FlowPolicy, controls: int = 2, group: int = 2, seed: int = 0):
    env = envs.ARVideoDenoisingVectorEnv(num_envs=controls * group, num_steps=N)
    collector = envs.EnvCollector(env)
    mask = OneStepPerFrame().mask(collector.num_frames, N, torch.Generator().manual_seed(seed))
    control = env.world.control_source.sample(controls, torch.Generator().manual_seed(seed))
    ro = collector.collect(policy, control, group_size=group, mask=mask, generator=torch.Generator().manual_seed(seed + 1))
    return ro, control.repeat_interleave(group)


def grads(module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


def test_causal_wan_checkpointing_gives_the_same_loss_and_gradients():
    policy = make_policy()
    ro, rows = collect(policy)
    losses, all_grads = [], []
    for on in (False, True):
        policy.model.checkpointing = on
        policy.zero_grad(set_to_none=True)
        loss = policy.recompute(ro, rows).square().mean()
        loss.backward()
        losses.append(loss.detach())
        all_grads.append(grads(policy))
    assert torch.equal(losses[0], losses[1])
    assert len(all_grads[0]) == len(all_grads[1]) > 0
    for a, b in zip(*all_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # without gradients (acting, the KL reference) nothing is checkpointed: same numbers either way
    with torch.no_grad():
        assert torch.equal(policy.recompute(ro, rows), make_policy(checkpointing=False).recompute(ro, rows))


def test_checkpointing_saves_activation_memory():
    """Bytes saved for backward (what checkpointing trades for compute), counted by a saved-tensors hook."""
    policy = make_policy()
    ro, rows = collect(policy)

    def saved_bytes() -> int:
        seen: dict[int, int] = {}

        def pack(t):
            seen[id(t.untyped_storage())] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            policy.recompute(ro, rows).square().mean().backward()
        return sum(seen.values())

    policy.model.checkpointing = False
    full = saved_bytes()
    policy.model.checkpointing = True
    ckpt = saved_bytes()
    assert ckpt < 0.7 * full, (ckpt, full)


def test_teacher_and_critic_checkpointing_give_the_same_gradients():
    from policies.step1 import Distiller

    torch.manual_seed(0)
    teacher = BidirectionalWan.from_config(tiny_wan_config(latent_channels=48, cond_channels=100, dim=32, heads=2, layers=2))
    x = torch.randn(2, 3, 48, 4, 4)
    cond = {"frames": torch.randn(2, 3, 100, 4, 4), "text": torch.randn(2, 5, 32)}
    from tensordict import TensorDict

    cond = TensorDict(cond, batch_size=[2])
    out = []
    for on in (False, True):
        teacher.checkpointing = on
        assert teacher.checkpointing is on
        teacher.zero_grad(set_to_none=True)
        teacher(x, torch.tensor([0.3, 0.8]), cond).square().mean().backward()
        out.append(grads(teacher))
    for a, b in zip(*out):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    teacher.checkpointing = False
    d = Distiller(CausalWan.tiny(text_dim=32), teacher, rollout=None, sigmas=torch.linspace(1, 0, 4), critic_checkpointing=True)
    assert d.critic.checkpointing and not d.teacher.checkpointing
    with pytest.raises(TypeError, match="critic_checkpointing needs a teacher with a checkpointing switch"):
        Distiller(CausalWan.tiny(text_dim=32), torch.nn.Linear(2, 2), rollout=None, sigmas=torch.linspace(1, 0, 4), critic_checkpointing=True)


def bf16_matmul_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.ones(2, 2) @ torch.ones(2, 2) is not None
    except RuntimeError:
        return False


@pytest.mark.skipif(not bf16_matmul_works(), reason="this CPU has no bf16 matmul")
def test_bf16_acting_and_recompute_stay_on_policy():
    """bf16 compute on both paths: the log-ratio before any update is measured and far inside the clip range."""
    policy = make_policy("bfloat16")
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # fp32 master weights
    ro, rows = collect(policy)
    assert ro["steps", "mean"].dtype == torch.float32 and ro["steps", "log_prob"].dtype == torch.float32
    with torch.no_grad():
        mean = policy.recompute(ro, rows)
    assert mean.dtype == torch.float32
    logp = gaussian_log_prob(ro["steps", "action"].flatten(0, 1), mean.flatten(0, 1), ro["steps", "std"].flatten())
    log_ratio = (logp - ro["steps", "log_prob"].flatten()).abs().max().item()
    assert log_ratio < 1e-4, log_ratio  # the job's clip range is 2e-3 (AR-Drag-size clip ranges: 1e-4 .. 1e-3)
    # bf16 really is different from fp32 (the test would be empty otherwise)
    fp32 = make_policy("float32")
    with torch.no_grad():
        assert (fp32.recompute(ro, rows) - mean).abs().max().item() > 1e-4
    with pytest.raises(ValueError, match="compute_dtype must be float32, bfloat16 or float16"):
        make_policy("int8")


class CountingEncoder:
    def __init__(self, inner):
        self.inner, self.rows = inner, 0

    def encode(self, control, num_frames, generator=None):
        self.rows += control.batch_size
        return self.inner.encode(control, num_frames, generator=generator)


def test_conditioning_is_encoded_once_per_collected_batch_and_shared_by_the_reference():
    policy = make_policy()
    counting = CountingEncoder(policy.encoder)
    object.__setattr__(policy, "encoder", counting)
    reference = copy.deepcopy(policy)
    assert reference.encoder is policy.encoder and reference.memo is policy.memo  # frozen encoders are never copied
    assert reference.model is not policy.model
    ro, rows = collect(policy, controls=2, group=3)  # R = 6 rows of 2 controls
    assert counting.rows == 2  # one encoding per control, not per rollout
    policy.recompute(ro, rows)
    policy.recompute(ro[[1, 4]], rows.index([1, 4]))
    with torch.no_grad():
        reference.recompute(ro, rows)
    assert counting.rows == 2  # recompute and the reference reuse them
    # the memoized conditioning is exactly what a fresh encoding gives
    fresh = make_policy()
    fresh.memo.max_rows = 0
    assert torch.equal(fresh.conditioning(rows, 8)["frames"], policy.conditioning(rows, 8)["frames"])


def test_micro_batches_make_the_minibatch_update():
    def trainer(micro):
        policy = make_policy(seed=2)
        env = envs.ARVideoDenoisingVectorEnv(num_envs=4, num_steps=N)
        opt = torch.optim.SGD(policy.parameters(), lr=1e-2)
        return GRPOTrainer(
            policy, envs.EnvCollector(env), env.world.control_source, OneStepPerFrame(), optimizer=opt, num_controls=2, group_size=2,
            clip_range=0.2, kl_coef=0.1, micro_batch_size=micro, max_grad_norm=1e6, seed=0,
        )  # fmt: skip

    whole, micro = trainer(None), trainer(1)
    rollout, control = whole.collect()
    from rldiff.trainer import compute_advantages

    adv = compute_advantages(rollout, 0.0, 1e-4, 5.0, whole.advantage)
    m_whole = whole.update(rollout, control, adv)
    m_micro = micro.update(rollout, control, adv)
    assert m_whole["updates"] == m_micro["updates"] == 1.0
    assert abs(m_whole["loss"] - m_micro["loss"]) < 1e-6 and abs(m_whole["grad_norm"] - m_micro["grad_norm"]) < 1e-5 * m_whole["grad_norm"]
    for a, b in zip(whole.policy.parameters(), micro.policy.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
    with pytest.raises(ValueError, match="micro_batch_size must be a positive int or None, got 0"):
        trainer(0)
