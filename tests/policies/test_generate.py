"""generate(): streams decoded frames with latencies; trajectory changes between frames take effect."""

from __future__ import annotations

import torch

from policies import CausalWan, FlowPolicy, generate
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.text_encoder import HashTextEncoder
from rldiff.data.sprites import SpritesDrag
from rldiff.flow import CPSStep, ode_step, shifted_sigmas

F = 4


def parts():
    model = CausalWan.tiny(window=3, seed=2).eval()
    with torch.no_grad():  # make the trajectory channels matter (they are zero-initialized)
        model.transformer.patch_embedding.weight[:, -48:].normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    codec = PixelCodec(factor=4)
    encoder = ControlEncoder(codec, text_encoder=HashTextEncoder(dim=32, max_length=8))
    control = SpritesDrag(image_size=32, num_frames=F).sample(2, torch.Generator().manual_seed(0))
    return model, codec, encoder, control


def test_generate_streams_frames_and_latency():
    model, codec, encoder, control = parts()
    outs = list(generate(model, encoder, codec, control, F, num_steps=3, shift=2.0, generator=torch.Generator().manual_seed(1)))
    assert [o.index for o in outs] == list(range(F))
    for o in outs:
        assert o.frames.shape == (2, 1, 3, 32, 32)  # PixelCodec: one pixel frame per latent frame
        assert float(o.frames.min()) >= 0.0 and float(o.frames.max()) <= 1.0
        assert o.latent.shape == (2, 48, 8, 8)
        assert 0.0 < o.frame_s <= o.latency_s
    latencies = [o.latency_s for o in outs]
    assert latencies == sorted(latencies)
    # the streamed latents are the ODE sampler run by hand through the cache path
    g = torch.Generator().manual_seed(1)
    seed = int(torch.randint(0, 2**62, (), generator=g))
    cond = encoder.encode(control, F, generator=torch.Generator().manual_seed(seed))
    noise = torch.randn(2, F, 48, 8, 8, generator=g)
    sig = shifted_sigmas(3, 2.0).tolist()
    with torch.no_grad():
        cache = model.new_cache(cond)
        for m in range(F):
            x = noise[:, m]
            for n in range(3):
                x = ode_step(x, model.forward_frame(x, m, 1000 * sig[n], cond, cache), sig[n], sig[n + 1])
            assert torch.allclose(x, outs[m].latent, atol=1e-5)
            model.commit(x, m, cond, cache)
    # a FlowPolicy is accepted too and gives the same video
    policy = FlowPolicy(model, encoder, step=CPSStep(0.5))
    again = list(generate(policy, encoder, codec, control, F, num_steps=3, shift=2.0, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(a.latent, b.latent) for a, b in zip(outs, again))
    assert torch.is_grad_enabled()  # generate never leaves the caller in no_grad


def test_trajectory_fn_changes_later_frames_only():
    model, codec, encoder, control = parts()
    moved = control.with_(trajectory=(control.trajectory * 0.5 + 0.25))
    calls = []

    def drag(m, ctrl):
        calls.append(m)
        return moved if m == 2 else None

    base = list(generate(model, encoder, codec, control, F, generator=torch.Generator().manual_seed(4)))
    dragged = list(generate(model, encoder, codec, control, F, generator=torch.Generator().manual_seed(4), trajectory_fn=drag))
    assert calls == [1, 2, 3]
    for m in range(F):
        same = torch.allclose(base[m].latent, dragged[m].latent, atol=1e-6)
        assert same == (m < 2), m
