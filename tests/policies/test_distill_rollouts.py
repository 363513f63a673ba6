"""Self-Rollout, Self-Forcing and Teacher-Forcing histories on a tiny CausalWan."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from tensordict import TensorDict

from policies.causal_wan import CausalWan
from policies.distill_rollouts import SelfForcing, SelfRollout, TeacherForcing
from policies.teacher import tiny_wan_config
from rldiff.flow import ode_step, shifted_sigmas

B, F, C = 2, 4, 48


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = CausalWan(WanTransformer3DModel(**tiny_wan_config(layers=2, dim=64)), extra_in_channels=48, window=3)
    g = torch.Generator().manual_seed(1)
    cond = TensorDict({"text": torch.randn(B, 5, 32, generator=g), "frames": torch.randn(B, F, 100, 8, 8, generator=g)}, batch_size=[B])
    noise = torch.randn(B, F, C, 8, 8, generator=g)
    return model, cond, noise, shifted_sigmas(3, 3.0)


def inference(model, cond, noise, sigmas):
    """Plain N-step ODE generation through the cache: what the student does at test time."""
    cache, frames = model.new_cache(cond), []
    with torch.no_grad():
        for m in range(noise.shape[1]):
            x = noise[:, m]
            for n in range(len(sigmas) - 1):
                x = ode_step(x, model.forward_frame(x, m, 1000.0 * float(sigmas[n]), cond, cache), float(sigmas[n]), float(sigmas[n + 1]))
            model.commit(x, m, cond, cache)
            frames.append(x)
    return torch.stack(frames, 1)


def test_self_rollout_history_is_exactly_inference(setup):
    model, cond, noise, sigmas = setup
    out = SelfRollout()(model, cond, noise, sigmas, torch.Generator().manual_seed(0))
    assert torch.allclose(out.history, inference(model, cond, noise, sigmas), atol=1e-5)
    assert out.x0.requires_grad and out.x0.shape == noise.shape
    # frames that exit at the last step produce exactly their committed frame
    last = out.exit_steps == len(sigmas) - 2
    assert torch.allclose(out.x0[:, last].detach(), out.history[:, last], atol=1e-5)
    out.x0.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad()


def test_self_forcing_commits_the_jump_and_teacher_forcing_the_ground_truth(setup):
    model, cond, noise, sigmas = setup
    sf = SelfForcing()(model, cond, noise, sigmas, torch.Generator().manual_seed(0))
    assert torch.equal(sf.history, sf.x0.detach())
    gt = torch.randn_like(noise)
    tf = TeacherForcing()(model, cond, noise, sigmas, torch.Generator().manual_seed(0), ground_truth=gt)
    assert torch.equal(tf.history, gt)
    with pytest.raises(ValueError, match="ground_truth"):
        TeacherForcing()(model, cond, noise, sigmas)
