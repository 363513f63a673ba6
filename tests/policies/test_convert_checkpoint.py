"""``python -m policies.convert_checkpoint``: original Wan layout -> CausalWan directory.

The checkpoints are tiny random models written in the original Wan key layout
(built from the diffusers model with the inverse key table), wrapped the way
Self-Forcing / LongLive / CausVid wrap them. A few renames are also checked
by hand against diffusers' own Wan conversion script.
"""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from policies import CausalWan
from policies.causal_wan_io import tiny_config
from policies.convert_checkpoint import convert_checkpoint, main, rldiff_window
from policies.wan_grow import grow_to_i2v
from policies.wan_keys import diffusers_to_wan_key, wan_to_diffusers_key

B, C, HW, TEXT = 2, 16, 8, 32


def tiny_diffusers(i2v: bool, seed: int = 0):
    from diffusers import WanTransformer3DModel

    cfg = tiny_config(latent_channels=C, num_heads=2, head_dim=32, text_dim=TEXT, image_dim=24 if i2v else None)
    if not i2v:
        cfg["in_channels"] = C
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanTransformer3DModel(**cfg).eval()
        for p in model.parameters():  # norms and zero biases randomised too, so a swapped key cannot pass unseen
            p.data.normal_(0, 0.2)
    return model


def wan_layout(model) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        original = diffusers_to_wan_key(key)
        assert original is not None, key
        state[original] = value.clone()
    return state


def cond_for(model: CausalWan, num_frames: int, image: bool, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    td = {
        "text": torch.randn(B, 5, TEXT, generator=g),
        "frames": torch.randn(B, num_frames, model.cond_channels, HW, HW, generator=g),
    }
    if image:
        td["image"] = torch.randn(B, 3, model.transformer.config.image_dim, generator=g)
    return TensorDict(td, batch_size=[B])


def test_renames_match_diffusers_conversion_script():
    # by hand, from diffusers' scripts/convert_wan_to_diffusers.py
    assert wan_to_diffusers_key("blocks.4.self_attn.q.weight") == "blocks.4.attn1.to_q.weight"
    assert wan_to_diffusers_key("blocks.4.self_attn.o.bias") == "blocks.4.attn1.to_out.0.bias"
    assert wan_to_diffusers_key("blocks.4.cross_attn.k_img.weight") == "blocks.4.attn2.add_k_proj.weight"
    assert wan_to_diffusers_key("blocks.4.cross_attn.norm_k_img.weight") == "blocks.4.attn2.norm_added_k.weight"
    assert wan_to_diffusers_key("blocks.4.norm3.weight") == "blocks.4.norm2.weight"  # the cross-attention norm
    assert wan_to_diffusers_key("blocks.4.ffn.0.weight") == "blocks.4.ffn.net.0.proj.weight"
    assert wan_to_diffusers_key("blocks.4.modulation") == "blocks.4.scale_shift_table"
    assert wan_to_diffusers_key("head.modulation") == "scale_shift_table"
    assert wan_to_diffusers_key("head.head.weight") == "proj_out.weight"
    assert wan_to_diffusers_key("time_projection.1.bias") == "condition_embedder.time_proj.bias"
    assert wan_to_diffusers_key("img_emb.proj.4.weight") == "condition_embedder.image_embedder.norm2.weight"
    assert wan_to_diffusers_key("blocks.4.self_attn.qq.weight") is None
    assert rldiff_window(12, 3) == (9, 3) and rldiff_window(-1, 0) == (1024, 0)


@pytest.mark.parametrize(
    "i2v, fmt, wrap",
    [
        (False, "self_forcing", lambda sd: {"generator_ema": {"model." + k: v for k, v in sd.items()}, "generator": {}, "step": torch.tensor(3)}),
        (False, "longlive", lambda sd: {"generator": {"model._fsdp_wrapped_module." + k: v for k, v in sd.items()}}),
        (True, "causvid", lambda sd: {"generator": sd}),
        (True, "wan", lambda sd: sd),
    ],
)
def test_converts_loads_strictly_and_equals_diffusers(tmp_path, i2v, fmt, wrap):
    reference = tiny_diffusers(i2v)
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(wan_layout(reference)), path)
    report = convert_checkpoint(path, tmp_path / "out", fmt, num_heads=2)
    saved = json.loads((tmp_path / "out" / "causal_config.json").read_text())
    model = CausalWan.from_pretrained(tmp_path / "out").eval()
    p = 1 if fmt == "wan" else 3
    assert saved["frames_per_block"] == model.frames_per_block == p
    assert (model.window, model.sink) == {"wan": (7, 0), "self_forcing": (1024, 0), "longlive": (9, 3), "causvid": (1024, 0)}[fmt]
    assert report["image_projection"] == i2v
    ref_state = reference.state_dict()
    assert set(model.transformer.state_dict()) == set(ref_state)
    for key, value in model.transformer.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    # same outputs: the converted model in stock diffusers, and CausalWan's first block vs the stock forward
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, reference.config.in_channels, p, HW, HW, generator=g)  # [B, C_in, P, H, W]
    text = torch.randn(B, 512, TEXT, generator=g)  # diffusers splits image tokens off at len - 512
    image = torch.randn(B, 3, 24, generator=g) if i2v else None
    t = torch.full((B,), 700.0)
    with torch.no_grad():
        expected = reference(x, t, text, encoder_hidden_states_image=image, return_dict=False)[0]
        got = model.transformer(x, t, text, encoder_hidden_states_image=image, return_dict=False)[0]
        assert torch.equal(got, expected)
        cond = TensorDict({"text": text, "frames": x[:, C:].transpose(1, 2)} | ({"image": image} if i2v else {}), batch_size=[B])
        cache = model.new_cache(cond)
        v = model.forward_block(x[:, :C].transpose(1, 2), 0, 700.0, cond, cache)  # [B, P, C, H, W]
    torch.testing.assert_close(v, expected.transpose(1, 2), atol=2e-5, rtol=1e-4)


def test_safetensors_and_cli(tmp_path, capsys):
    from safetensors.torch import save_file

    state = wan_layout(tiny_diffusers(False))
    save_file(state, tmp_path / "w.safetensors")
    assert main(["--format", "longlive", "--input", str(tmp_path / "w.safetensors"), "--output", str(tmp_path / "o"), "--num-heads", "2", "--window", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["window"], report["sink"], report["frames_per_block"]) == (6, 3, 3)
    assert CausalWan.from_pretrained(tmp_path / "o").window == 6


def test_extra_or_missing_keys_fail_by_name(tmp_path):
    state = wan_layout(tiny_diffusers(False))
    extra = dict(state, **{"blocks.0.self_attn.lora_A.weight": torch.zeros(2, 2), "ema_decay": torch.tensor(0.99)})
    torch.save({"generator_ema": extra}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"no diffusers counterpart: \['blocks.0.self_attn.lora_A.weight', 'ema_decay'\]"):
        convert_checkpoint(tmp_path / "extra.pt", tmp_path / "a", "self_forcing", num_heads=2)
    missing = {k: v for k, v in state.items() if k not in ("blocks.1.cross_attn.o.bias", "blocks.0.norm3.weight")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing from the checkpoint: \['blocks.0.norm2.weight', 'blocks.1.attn2.to_out.0.bias'\]"):
        convert_checkpoint(tmp_path / "missing.pt", tmp_path / "b", "wan", num_heads=2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class Opaque:
    """Not a tensor: torch.load(weights_only=True) must refuse it."""


def test_refuses_pickled_objects_and_unknown_wrappers(tmp_path):
    torch.save({"generator": Opaque()}, tmp_path / "obj.pt")
    with pytest.raises(ValueError, match="not a plain state dict"):
        convert_checkpoint(tmp_path / "obj.pt", tmp_path / "a", "self_forcing")
    torch.save({"critic": {"x": torch.zeros(1)}, "optimizer": {"x": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"generator_ema.*holds \['critic', 'optimizer'\]"):
        convert_checkpoint(tmp_path / "other.pt", tmp_path / "a", "self_forcing")


def test_grown_i2v_student_equals_t2v_before_training(tmp_path):
    t2v = tiny_diffusers(False)
    torch.save({"generator_ema": wan_layout(t2v)}, tmp_path / "sf.pt")
    report = convert_checkpoint(tmp_path / "sf.pt", tmp_path / "i2v", "self_forcing", i2v=True, num_heads=2, image_dim=24)
    assert report["grown_to_i2v"] and report["in_channels"] == C + 4 + C + C and report["extra_in_channels"] == C
    grown = CausalWan.from_pretrained(tmp_path / "i2v").eval()
    base = CausalWan(t2v, extra_in_channels=0, window=1024, frames_per_block=3).eval()
    assert grown.cond_channels == 4 + C + C and grown.transformer.config.image_dim == 24
    num_frames = 6
    cond_i2v = cond_for(grown, num_frames, image=True, seed=3)  # mask | reference | trajectory and CLIP features: anything
    cond_t2v = TensorDict({"text": cond_i2v["text"], "frames": torch.zeros(B, num_frames, 0, HW, HW)}, batch_size=[B])
    g = torch.Generator().manual_seed(4)
    clean, noisy = torch.randn(B, 3, C, HW, HW, generator=g), torch.randn(B, 3, C, HW, HW, generator=g)
    with torch.no_grad():
        a = grown.forward_parallel(clean, noisy, torch.arange(3, 6), torch.full((B, 3), 400.0), cond_i2v)
        b = base.forward_parallel(clean, noisy, torch.arange(3, 6), torch.full((B, 3), 400.0), cond_t2v)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # the grow itself refuses an I2V model
    with pytest.raises(ValueError, match="expects a T2V model"):
        grow_to_i2v(tiny_diffusers(True))
