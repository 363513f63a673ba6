"""LoRA through peft: adapters start at zero, the base is frozen, adapters-off is the base,
save/load alone round-trips, merging gives a plain diffusers directory with the adapted output,
and a LoRA GRPO step uses the base (adapters off) as KL reference without copying anything."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

import envs  # noqa: E402
from policies import CausalWan, FlowPolicy  # noqa: E402
from policies.codecs import PixelCodec  # noqa: E402
from policies.conditioning import ControlEncoder  # noqa: E402
from policies.lora import BaseReference, adapters_disabled, add_lora, load_lora, lora_layers, merge_lora, save_lora  # noqa: E402
from policies.text_encoder import HashTextEncoder  # noqa: E402
from rldiff.flow import CPSStep  # noqa: E402
from rldiff.stochasticity import OneStepPerFrame  # noqa: E402
from rldiff.trainer import GRPOTrainer  # noqa: E402

N = 3


def make_policy(seed: int = 1) -> FlowPolicy:
    model = CausalWan.tiny(window=3, text_dim=32, seed=seed)
    encoder = ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32, max_length=8))
    return FlowPolicy(model, encoder, step=CPSStep(0.7), cond_seed=5)


def batch(policy):
    env = envs.ARVideoDenoisingVectorEnv(num_envs=4, num_steps=N)
    collector = envs.EnvCollector(env)
    mask = OneStepPerFrame().mask(collector.num_frames, N, torch.Generator().manual_seed(0))
    control = env.world.control_source.sample(2, torch.Generator().manual_seed(0))
    ro = collector.collect(policy, control, group_size=2, mask=mask, generator=torch.Generator().manual_seed(1))
    return ro, control.repeat_interleave(2)


def perturb_adapters(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_adapters_start_at_zero_freeze_the_base_and_switch_off(tmp_path):
    policy = make_policy()
    ro, rows = batch(policy)
    with torch.no_grad():
        base = policy.recompute(ro, rows)
    add_lora(policy.model, rank=4)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # attention (self and cross) and FFN projections of every block carry adapters
    names = {n.split("blocks.0.")[-1] for n, m in policy.model.named_modules() if m in lora_layers(policy.model) and "blocks.0." in n}
    assert {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "ffn.net.0.proj", "ffn.net.2"} <= names
    with torch.no_grad():
        assert torch.equal(policy.recompute(ro, rows), base)  # B = 0 at init: the output is the base's
    perturb_adapters(policy.model)
    with torch.no_grad():
        adapted = policy.recompute(ro, rows)
        assert (adapted - base).abs().max() > 1e-4
        with adapters_disabled(policy.model):
            assert torch.allclose(policy.recompute(ro, rows), base, atol=1e-6)
        assert torch.equal(policy.recompute(ro, rows), adapted)  # back on
    assert all(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)
    # the adapters alone: save, load into a fresh base, same output
    save_lora(policy.model, tmp_path / "lora")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh = make_policy()
    load_lora(fresh.model, tmp_path / "lora")
    with torch.no_grad():
        assert torch.allclose(fresh.recompute(ro, rows), adapted, atol=1e-6)
    # merged into a plain diffusers directory: no adapters left, same output after a reload
    merge_lora(fresh.model)
    assert not lora_layers(fresh.model)
    fresh.model.save_pretrained(tmp_path / "merged")
    reloaded = FlowPolicy(CausalWan.from_pretrained(tmp_path / "merged"), fresh.encoder, step=CPSStep(0.7), cond_seed=5)
    with torch.no_grad():
        assert torch.allclose(reloaded.recompute(ro, rows), adapted, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_lora(make_policy().model, tmp_path / "merged")
    with pytest.raises(ValueError, match="rank must be a positive int, got 0"):
        add_lora(make_policy().model, rank=0)


def test_lora_grpo_step_uses_the_base_as_reference_without_a_copy():
    policy = make_policy()
    add_lora(policy.model, rank=2)
    env = envs.ARVideoDenoisingVectorEnv(num_envs=4, num_steps=N)
    reference = BaseReference(policy)
    trainer = GRPOTrainer(
        policy, envs.EnvCollector(env), env.world.control_source, OneStepPerFrame(), lr=1e-2, num_controls=2, group_size=2,
        kl_coef=0.1, reference=reference, seed=0,
    )  # fmt: skip
    assert trainer.reference is reference and len(trainer.params) == sum("lora_" in n for n, _ in policy.named_parameters())
    base = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" not in n}
    m1 = trainer.step()
    assert abs(m1["ratio_mean_first"] - 1.0) < 1e-6 and m1["loss_kl"] == 0.0  # adapters at zero: policy = base
    m2 = trainer.step()
    assert m2["loss_kl"] > 0  # the adapters moved away from the base
    assert all(torch.equal(p, base[n]) for n, p in policy.named_parameters() if "lora_" not in n)  # base frozen
    with pytest.raises(ValueError, match="BaseReference: the policy has no LoRA adapters"):
        BaseReference(make_policy())
