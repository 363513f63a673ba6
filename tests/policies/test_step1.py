"""Step-1 training steps on tiny models: the teacher learns, the distiller updates what it should."""

import torch
from tensordict import TensorDict

from policies.causal_wan import CausalWan
from policies.distill_rollouts import SelfRollout
from policies.step1 import Distiller, WorldBatch, teacher_loss
from policies.teacher import BidirectionalWan, tiny_wan_config
from rldiff.flow import shifted_sigmas

B, F = 2, 3


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    cond = TensorDict({"text": torch.randn(B, 4, 32, generator=g), "frames": torch.randn(B, F, 100, 8, 8, generator=g)}, batch_size=[B])
    return WorldBatch(torch.randn(B, F, 48, 8, 8, generator=g).clamp(-1, 1), cond, None)


def tiny_teacher():
    torch.manual_seed(0)
    return BidirectionalWan.from_config(tiny_wan_config(dim=32, heads=2, layers=2))


def test_teacher_loss_decreases_on_a_fixed_batch():
    teacher, data = tiny_teacher(), batch()
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):  # same noise every step: a fixed regression problem
        loss = teacher_loss(teacher, data, torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_distiller_updates_generator_every_k_and_critic_every_step(tmp_path):
    teacher = tiny_teacher()
    teacher.save_pretrained(tmp_path / "t")
    student = CausalWan.from_pretrained(tmp_path / "t", extra_in_channels=0, window=2)
    d = Distiller(student, teacher, SelfRollout(), shifted_sigmas(3, 3.0), generator_every=2, adv_weight=0.1)
    teacher_before = [p.clone() for p in teacher.parameters()]
    s0 = [p.clone() for p in student.parameters()]
    c0 = [p.clone() for p in d.critic.parameters()]
    m0 = d.step(batch(0), torch.Generator().manual_seed(0))  # generator + critic
    assert {"loss_dmd", "loss_gan_g", "loss_critic", "loss_gan_d"} <= set(m0)
    s1 = [p.clone() for p in student.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(s0, s1))
    assert any(not torch.equal(a, b) for a, b in zip(c0, d.critic.parameters()))
    m1 = d.step(batch(1), torch.Generator().manual_seed(1))  # critic only
    assert "loss_dmd" not in m1
    assert all(torch.equal(a, b) for a, b in zip(s1, student.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.parameters()))  # the real score stays frozen
    assert any(not torch.equal(a, b) for a, b in zip(s0, d.ema.parameters()))
    # EMA warm-up: the first generator update uses decay (1 + 0) / (10 + 0) = 0.1, so ema = 0.1 * s0 + 0.9 * s1
    for e, a, b in zip(d.ema.parameters(), s0, s1):
        torch.testing.assert_close(e, 0.1 * a + 0.9 * b)


def test_ema_decay_warms_up_to_the_configured_value():
    d = Distiller.__new__(Distiller)  # only the schedule is exercised here
    d.ema_decay, d.generator_every = 0.99, 5
    decays = []
    for it in (0, 5, 50, 5000):  # generator updates n = 0, 1, 10, 1000
        d.iteration = it
        decays.append(d.ema_decay_now())
    assert decays == [0.1, 2 / 11, 11 / 20, 0.99]
