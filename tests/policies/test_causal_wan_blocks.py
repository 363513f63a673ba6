"""CausalWan with blocks of several latent frames (Self-Forcing / LongLive / CausVid layout).

Blocks of P frames share a timestep and attend to each other both ways; the
window and the sink are counted in frames. Cache path == parallel path for
P = 1 and P = 3, with eviction and sinks.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from policies import CausalWan
from policies.causal_kv_cache import block_sees, is_visible

B, C, HW = 2, 48, 8


def make_cond(model: CausalWan, num_frames: int, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    td = {
        "text": torch.randn(B, 5, model.transformer.config.text_dim, generator=g),  # [B, L, D_text]
        "frames": torch.randn(B, num_frames, model.cond_channels, HW, HW, generator=g),  # [B, F, C_cond, H, W]
    }
    return TensorDict(td, batch_size=[B])


def cache_rollout(model: CausalWan, clean, noisy, timestep, cond):
    """Block by block: velocity of noisy block b at timestep[:, b], then commit clean block b."""
    p = model.frames_per_block
    cache = model.new_cache(cond)
    vs = []
    for blk in range(noisy.shape[1] // p):
        frames = slice(blk * p, (blk + 1) * p)
        vs.append(model.forward_block(noisy[:, frames], blk, timestep[:, blk], cond, cache))
        model.commit_block(clean[:, frames], blk, cond, cache)
    return torch.cat(vs, dim=1), cache  # [B, F, C, H, W]


def test_block_visibility_by_hand():
    # LongLive's local_attn_size 12, sink 3 -> window 9, sink 3, blocks of 3.
    # block of frames 12..14: recent frames j > 14 - 9 = 5 before 12 -> 6..11, plus sinks 0..2: 9 + 3 own = 12 frames
    assert [j for j in range(12) if block_sees(12, 3, j, 9, 3)] == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    # block of frames 3..5 with window 3: only its own frames (3 - 1 = ... j > 5 - 3 = 2 and j < 3: none)
    assert [j for j in range(3) if block_sees(3, 3, j, 3, 0)] == []
    # a one-frame block is the frame rule
    for j in range(6):
        assert block_sees(6, 1, j, 3, 1) == is_visible(6, j, 3, 1)


@pytest.mark.parametrize("p, window, sink", [(1, 3, 0), (3, 6, 0), (3, 6, 3), (3, 3, 0)])
def test_cache_path_equals_parallel_path_with_blocks(p, window, sink):
    num_frames = 4 * p  # 4 blocks: with window 2 * P blocks the first block is evicted
    torch.manual_seed(1)
    model = CausalWan.tiny(window=window, sink=sink, frames_per_block=p).eval()
    cond = make_cond(model, num_frames)
    clean = torch.randn(B, num_frames, C, HW, HW)
    noisy = torch.randn(B, num_frames, C, HW, HW)
    block_t = torch.rand(B, num_frames // p) * 1000  # [B, F/P]
    with torch.no_grad():
        v_cache, cache = cache_rollout(model, clean, noisy, block_t, cond)
        v_par = model.forward_parallel(clean[:, : num_frames - p], noisy, torch.arange(num_frames), block_t.repeat_interleave(p, dim=1), cond)
    # the cache keeps what the next block (frames F .. F + P - 1) sees
    last = num_frames + p - 1
    assert cache.frames == [j for j in range(num_frames) if j < sink or j > last - window]
    assert (v_cache - v_par).abs().max().item() <= 1e-4


def test_block_frames_attend_both_ways_and_window_counts_frames():
    torch.manual_seed(2)
    model = CausalWan.tiny(window=3, frames_per_block=3).eval()
    cond = make_cond(model, 6)
    clean = torch.randn(B, 3, C, HW, HW)
    noisy = torch.randn(B, 3, C, HW, HW)
    t = torch.full((B, 3), 500.0)
    with torch.no_grad():
        a = model.forward_parallel(clean, noisy, torch.arange(3, 6), t, cond)
        later = noisy.clone()
        later[:, 2] += 1.0  # the block's last frame changes the first one's output (bidirectional inside a block)
        b = model.forward_parallel(clean, later, torch.arange(3, 6), t, cond)
        other = clean + 1.0  # window 3 = the block itself: the clean history is out of sight
        c = model.forward_parallel(other, noisy, torch.arange(3, 6), t, cond)
    assert (a[:, 0] - b[:, 0]).abs().max().item() > 1e-3
    assert (a - c).abs().max().item() <= 1e-5


def test_block_errors_name_the_problem():
    model = CausalWan.tiny(window=6, frames_per_block=3)
    cond = make_cond(model, 6)
    cache = model.new_cache(cond)
    x = torch.randn(B, C, HW, HW)
    with pytest.raises(ValueError, match="forward_block"):
        model.forward_frame(x, 0, 0.0, cond, cache)
    with pytest.raises(ValueError, match="commit_block"):
        model.commit(x, 0, cond, cache)
    with pytest.raises(ValueError, match="P = frames_per_block = 3"):
        model.forward_block(torch.randn(B, 2, C, HW, HW), 0, 0.0, cond, cache)
    with pytest.raises(IndexError, match="next frame is 0"):
        model.forward_block(torch.randn(B, 3, C, HW, HW), 1, 0.0, cond, cache)
    noisy = torch.randn(B, 3, C, HW, HW)
    with pytest.raises(ValueError, match="share one timestep"):
        model.forward_parallel(torch.randn(B, 3, C, HW, HW), noisy, torch.arange(3, 6), torch.tensor([[1.0, 2.0, 3.0]] * B), cond)
    with pytest.raises(ValueError, match="must be one block"):
        model.forward_parallel(torch.randn(B, 3, C, HW, HW), noisy, torch.tensor([2, 3, 4]), torch.zeros(B, 3), cond)
    with pytest.raises(ValueError, match="multiple of frames_per_block"):
        model.forward_parallel(torch.randn(B, 2, C, HW, HW), noisy, torch.arange(3, 6), torch.zeros(B, 3), cond)
    with pytest.raises(ValueError, match="window must be >= 3"):
        CausalWan(model.transformer, extra_in_channels=C, window=2, frames_per_block=3)


def test_block_size_round_trips_through_save(tmp_path):
    model = CausalWan.tiny(window=9, sink=3, frames_per_block=3)
    model.save_pretrained(tmp_path / "student")
    loaded = CausalWan.from_pretrained(tmp_path / "student")
    assert (loaded.window, loaded.sink, loaded.frames_per_block) == (9, 3, 3)
