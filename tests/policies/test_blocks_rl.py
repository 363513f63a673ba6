"""Blocks of frames through the RL loop: masks over blocks, env, collector, FlowPolicy, recompute, generate.

A tiny CausalWan with ``frames_per_block = 3`` (the public causal students'
layout) acts in the env one block per decision; the rollout records the
block's frames as frame steps; the parallel recompute gives the acting means
back (GRPO ratio 1 on-policy).
"""

from __future__ import annotations

import pytest
import torch

import envs
from policies import CausalWan, FlowPolicy, generate
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rldiff.blocks import expand_block_mask, is_block_mask
from rldiff.data.sprites import SpritesDrag
from rldiff.flow import EulerMaruyamaStep, gaussian_log_prob, ode_step, shifted_sigmas
from rldiff.stochasticity import OneStepPerFrame

P, N, F = 3, 3, 6


def test_expand_block_mask_by_hand():
    blocks = torch.tensor([[False, True, False], [True, False, False]])  # [F/P = 2, N = 3]
    frames = expand_block_mask(blocks, 3)
    assert frames.tolist() == [[False, True, False]] * 3 + [[True, False, False]] * 3
    assert is_block_mask(frames, 3) and not is_block_mask(frames, 4)
    frames[1, 2] = True
    assert not is_block_mask(frames, 3)
    # one stochastic step per block: drawn over blocks, expanded to frames
    mask = expand_block_mask(OneStepPerFrame().mask(F // P, N, torch.Generator().manual_seed(0)), P)
    assert mask.shape == (F, N) and mask.sum(dim=1).tolist() == [1] * F and is_block_mask(mask, P)


def make_policy(window: int = 3, sink: int = 0) -> FlowPolicy:
    model = CausalWan.tiny(window=window, sink=sink, frames_per_block=P, text_dim=32, seed=1).eval()
    encoder = ControlEncoder(PixelCodec(factor=4), text_encoder=HashTextEncoder(dim=32, max_length=8))
    return FlowPolicy(model, encoder, step=EulerMaruyamaStep(0.7, sigma_cap=0.99), cond_seed=5)


def block_env(num_envs: int = 4):
    controls = {"_target_": "rldiff.data.sprites.SpritesDrag", "image_size": 32, "num_frames": F}
    return envs.ARVideoDenoisingVectorEnv(num_envs=num_envs, control_source=controls, num_steps=N, frames_per_block=P)


@pytest.mark.parametrize("window, sink", [(3, 0), (3, 3)])
def test_block_rollout_recompute_ratio_is_one(window, sink):
    policy = make_policy(window, sink)
    env = block_env()
    collector = envs.EnvCollector(env)
    assert (collector.num_frames, collector.num_blocks, collector.frames_per_block) == (F, F // P, P)
    assert env.single_action_space.shape == (P, 48, 8, 8)
    block_mask = OneStepPerFrame().mask(collector.num_blocks, N, torch.Generator().manual_seed(3))  # [F/P, N]
    control = env.world.control_source.sample(2, torch.Generator().manual_seed(0))
    ro = collector.collect(policy, control, group_size=2, mask=block_mask, generator=torch.Generator().manual_seed(1))
    steps = ro["steps"]
    chosen = block_mask.float().argmax(dim=1).tolist()  # the stochastic step of each block
    assert steps["frame"][0].tolist() == list(range(F))  # one frame step per frame of each stochastic block
    assert steps["step"][0].tolist() == [chosen[0]] * P + [chosen[1]] * P
    assert ro["reward"].shape == (4, F) and ro["clean"].shape == (4, F, 48, 8, 8)
    rows = control.repeat_interleave(2)
    mean = policy.recompute(ro, rows)
    assert (mean - steps["mean"]).abs().max().item() <= 1e-4
    logp = gaussian_log_prob(steps["action"].flatten(0, 1), mean.flatten(0, 1), steps["std"].flatten())
    ratio = torch.exp(logp - steps["log_prob"].flatten())
    assert (ratio - 1).abs().max().item() <= 1e-5
    mean.square().mean().backward()
    assert policy.model.transformer.proj_out.weight.grad.abs().sum().item() > 0


def test_collector_rejects_a_mask_that_splits_a_block():
    collector = envs.EnvCollector(block_env())
    mask = torch.zeros(F, N, dtype=torch.bool)
    mask[0, 0] = True  # frame 0 stochastic, frames 1, 2 of its block not
    control = collector.env.world.control_source.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="draw it over blocks"):
        collector.collect(make_policy(), control, group_size=2, mask=mask)
    with pytest.raises(ValueError, match="frames_per_block must be a positive int dividing F = 6"):
        envs.ARVideoDenoisingVectorEnv(num_envs=1, control_source=block_env().world.control_source, frames_per_block=4)


def test_block_env_rewards_each_frame():
    env = block_env(num_envs=2)
    env.reset(seed=0)
    for n in range(N):
        _, reward, terminated, _, info = env.step(torch.zeros(2, P, 48, 8, 8))
    assert info["frame"] == 0 and info["frame_rewards"].shape == (2, P)
    assert torch.allclose(reward, info["frame_rewards"].sum(dim=1))
    assert not bool(terminated.any()) and env._episodes.frame == P


def test_generate_with_blocks_is_the_block_ode_through_the_cache():
    policy = make_policy(window=6)
    model, encoder, codec = policy.model, policy.encoder, PixelCodec(factor=4)
    control = SpritesDrag(image_size=32, num_frames=F).sample(2, torch.Generator().manual_seed(0))
    outs = list(generate(model, encoder, codec, control, F, num_steps=N, shift=2.0, generator=torch.Generator().manual_seed(1)))
    assert [o.index for o in outs] == list(range(F))
    g = torch.Generator().manual_seed(1)
    seed = int(torch.randint(0, 2**62, (), generator=g))
    cond = encoder.encode(control, F, generator=torch.Generator().manual_seed(seed))
    noise = torch.randn(2, F, 48, 8, 8, generator=g)
    sig = shifted_sigmas(N, 2.0).tolist()
    with torch.no_grad():
        cache = model.new_cache(cond)
        for blk in range(F // P):
            x = noise[:, blk * P : (blk + 1) * P]
            for n in range(N):
                x = ode_step(x, model.forward_block(x, blk, 1000 * sig[n], cond, cache), sig[n], sig[n + 1])
            for i in range(P):
                assert torch.allclose(x[:, i], outs[blk * P + i].latent, atol=1e-5)
            model.commit_block(x, blk, cond, cache)
