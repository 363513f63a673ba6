"""CausalWan: cache path == parallel path, parity with stock diffusers, zero-init control channels.

All models are tiny random configs of the real diffusers ``WanTransformer3DModel``.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from policies import CausalWan
from policies.causal_kv_cache import is_visible

B, C, HW = 2, 48, 8


def make_cond(model: CausalWan, num_frames: int, seed: int = 0, text_len: int = 5, image: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    td = {
        "text": torch.randn(B, text_len, model.transformer.config.text_dim, generator=g),  # [B, L, D_text]
        "frames": torch.randn(B, num_frames, model.cond_channels, HW, HW, generator=g),  # [B, F, C_cond, H, W]
    }
    if image:
        td["image"] = torch.randn(B, 3, model.transformer.config.image_dim, generator=g)  # [B, L_img, D_img]
    return TensorDict(td, batch_size=[B])


def cache_rollout(model, clean, noisy, timestep, cond):
    """Frame by frame: velocity of noisy[:, m] at timestep[:, m], then commit clean[:, m]."""
    cache = model.new_cache(cond)
    vs = []
    for m in range(noisy.shape[1]):
        vs.append(model.forward_frame(noisy[:, m], m, timestep[:, m], cond, cache))
        model.commit(clean[:, m], m, cond, cache)
    return torch.stack(vs, dim=1), cache  # [B, F, C, H, W]


def test_visibility_rule_by_hand():
    # window 3, no sink: frame 5 sees frames 3, 4 (and itself); sink 1 adds frame 0
    assert [j for j in range(5) if is_visible(5, j, 3, 0)] == [3, 4]
    assert [j for j in range(5) if is_visible(5, j, 3, 1)] == [0, 3, 4]
    assert [j for j in range(5) if is_visible(5, j, 1, 0)] == []


@pytest.mark.parametrize("sink", [0, 2])
def test_cache_path_equals_parallel_path(sink):
    window, num_frames = 3, 6  # F = W + 3: frames are evicted from the cache
    torch.manual_seed(1)
    model = CausalWan.tiny(window=window, sink=sink).eval()
    cond = make_cond(model, num_frames)
    clean = torch.randn(B, num_frames, C, HW, HW)
    noisy = torch.randn(B, num_frames, C, HW, HW)
    timestep = torch.rand(B, num_frames) * 1000
    with torch.no_grad():
        v_cache, cache = cache_rollout(model, clean, noisy, timestep, cond)
        v_par = model.forward_parallel(clean[:, : num_frames - 1], noisy, torch.arange(num_frames), timestep, cond)
    # after committing 0..5 the cache keeps what frame 6 sees: the sinks and frames 4, 5
    assert cache.frames == list(range(sink)) + [4, 5]
    assert (v_cache - v_par).abs().max().item() <= 1e-4
    # a noisy block in the parallel pass is independent of clean frames at or after it
    clean2 = clean.clone()
    clean2[:, 3:] += 1.0
    with torch.no_grad():
        v_par2 = model.forward_parallel(clean2[:, :3], noisy[:, :4], torch.arange(4), timestep[:, :4], cond)
    assert (v_par2 - v_par[:, :4]).abs().max().item() <= 1e-4


def test_eviction_changes_output_and_window_is_used():
    # with window 2, frame 3 must not depend on clean frame 0; with window 7 it must
    torch.manual_seed(2)
    cond = None
    for window, should_change in ((2, False), (7, True)):
        model = CausalWan.tiny(window=window).eval()
        cond = make_cond(model, 4)
        clean = torch.randn(B, 4, C, HW, HW)
        noisy = torch.randn(B, 1, C, HW, HW)
        ts = torch.full((B, 1), 500.0)
        with torch.no_grad():
            a = model.forward_parallel(clean[:, :3], noisy, torch.tensor([3]), ts, cond)
            clean[:, 0] += 1.0
            b = model.forward_parallel(clean[:, :3], noisy, torch.tensor([3]), ts, cond)
        assert ((a - b).abs().max().item() > 1e-4) == should_change


def test_parallel_subset_of_frames_and_repeated_frames():
    # recompute-style call: several noisy blocks at the same frame, only frames 1 and 3
    torch.manual_seed(3)
    model = CausalWan.tiny(window=3).eval()
    cond = make_cond(model, 4)
    clean = torch.randn(B, 4, C, HW, HW)
    noisy = torch.randn(B, 3, C, HW, HW)
    ts = torch.tensor([[900.0, 400.0, 700.0]]).expand(B, 3)
    frames = torch.tensor([1, 1, 3])
    with torch.no_grad():
        v_par = model.forward_parallel(clean[:, :3], noisy, frames, ts, cond)
        cache = model.new_cache(cond)
        model.commit(clean[:, 0], 0, cond, cache)
        want = [model.forward_frame(noisy[:, 0], 1, ts[:, 0], cond, cache), model.forward_frame(noisy[:, 1], 1, ts[:, 1], cond, cache)]
        model.commit(clean[:, 1], 1, cond, cache)
        model.commit(clean[:, 2], 2, cond, cache)
        want.append(model.forward_frame(noisy[:, 2], 3, ts[:, 2], cond, cache))
    assert (v_par - torch.stack(want, 1)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("image_dim", [None, 24])
def test_frame0_equals_stock_diffusers(image_dim):
    torch.manual_seed(4)
    model = CausalWan.tiny(extra_in_channels=0, image_dim=image_dim).eval()
    # the stock processor splits image tokens off at len - 512: give 512 text tokens when there is an image
    cond = make_cond(model, 2, text_len=512 if image_dim else 7, image=image_dim is not None)
    x = torch.randn(B, C, HW, HW)
    t = torch.tensor([250.0, 800.0])
    with torch.no_grad():
        v = model.forward_frame(x, 0, t, cond, model.new_cache(cond))
        stock_in = torch.cat([x, cond["frames"][:, 0]], dim=1)[:, :, None]  # [B, C_in, 1, H, W]
        ref = model.transformer(stock_in, t, cond["text"], encoder_hidden_states_image=cond.get("image"), return_dict=False)[0]
    assert ref.shape == (B, C, 1, HW, HW)
    assert (v - ref[:, :, 0]).abs().max().item() <= 1e-5
    assert (model.transformer.condition_embedder.image_embedder is None) == (image_dim is None)


def test_zero_init_trajectory_channels_leave_output_unchanged(tmp_path):
    torch.manual_seed(5)
    base = CausalWan.tiny(extra_in_channels=0)
    base.transformer.save_pretrained(tmp_path / "base")  # a plain diffusers Wan directory (36-channel-style layout)
    plain = CausalWan.from_pretrained(tmp_path / "base", window=3).eval()
    widened = CausalWan.from_pretrained(tmp_path / "base", extra_in_channels=C, window=3).eval()
    assert widened.transformer.config.in_channels == plain.transformer.config.in_channels + C
    assert widened.transformer.patch_embedding.weight[:, -C:].abs().max().item() == 0.0
    num_frames = 5
    cond = make_cond(plain, num_frames)
    traj = torch.randn(B, num_frames, C, HW, HW) * 3  # arbitrary trajectory latents
    cond_w = TensorDict({"text": cond["text"], "frames": torch.cat([cond["frames"], traj], 2)}, batch_size=[B])
    clean, noisy = torch.randn(2, B, num_frames, C, HW, HW)
    ts = torch.rand(B, num_frames) * 1000
    with torch.no_grad():
        a, _ = cache_rollout(plain, clean, noisy, ts, cond)
        b, _ = cache_rollout(widened, clean, noisy, ts, cond_w)
    assert (a - b).abs().max().item() <= 1e-6
    # the new channels do learn: they get a gradient
    widened.train()
    cache = widened.new_cache(cond_w)
    widened.forward_frame(noisy[:, 0], 0, ts[:, 0], cond_w, cache).square().mean().backward()
    assert widened.transformer.patch_embedding.weight.grad[:, -C:].abs().sum().item() > 0


def test_forward_frame_has_gradients_and_parallel_backward():
    torch.manual_seed(6)
    model = CausalWan.tiny(window=3)
    cond = make_cond(model, 3)
    clean, noisy = torch.randn(2, B, 3, C, HW, HW)
    v = model.forward_parallel(clean[:, :2], noisy, torch.arange(3), torch.full((B, 3), 500.0), cond)
    v.square().mean().backward()
    assert model.transformer.blocks[0].attn1.to_q.weight.grad.abs().sum().item() > 0
