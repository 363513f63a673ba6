"""CausalWan loading/saving and the errors that name the culprit."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from policies import CausalWan

B, C, HW = 1, 48, 8


def make_cond(model: CausalWan, num_frames: int, cond_channels: int | None = None) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    cc = model.cond_channels if cond_channels is None else cond_channels
    return TensorDict(
        {"text": torch.randn(B, 4, model.transformer.config.text_dim, generator=g), "frames": torch.randn(B, num_frames, cc, HW, HW, generator=g)},
        batch_size=[B],
    )


def test_save_load_round_trip(tmp_path):
    model = CausalWan.tiny(window=4, sink=1, seed=3)
    model.save_pretrained(tmp_path / "student")
    files = sorted(p.name for p in (tmp_path / "student").iterdir())
    assert files == ["causal_config.json", "config.json", "diffusion_pytorch_model.safetensors"]
    assert json.loads((tmp_path / "student" / "causal_config.json").read_text()) == {"extra_in_channels": C, "window": 4, "sink": 1, "frames_per_block": 1}
    loaded = CausalWan.from_pretrained(tmp_path / "student")
    assert (loaded.window, loaded.sink, loaded.extra_in_channels) == (4, 1, C)
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    cond = make_cond(model, 3)
    x = torch.randn(B, C, HW, HW)
    with torch.no_grad():
        a = model.forward_frame(x, 0, 300.0, cond, model.new_cache(cond))
        b = loaded.forward_frame(x, 0, 300.0, cond, loaded.new_cache(cond))
    assert torch.equal(a, b)
    # overriding the window at load time; a conflicting channel count is an error
    assert CausalWan.from_pretrained(tmp_path / "student", window=7).window == 7
    with pytest.raises(ValueError, match="extra_in_channels=16 conflicts"):
        CausalWan.from_pretrained(tmp_path / "student", extra_in_channels=16)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CausalWan.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CausalWan.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        CausalWan.from_pretrained(tmp_path / "empty")
    base = CausalWan.tiny(extra_in_channels=0)
    base.transformer.save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="extra_in_channels must be >= 0"):
        CausalWan.from_pretrained(tmp_path / "base", extra_in_channels=-1)


def test_shape_and_index_errors():
    model = CausalWan.tiny(window=3)
    cond = make_cond(model, 3)
    cache = model.new_cache(cond)
    x = torch.randn(B, C, HW, HW)
    with pytest.raises(ValueError, match="C_cond = 100"):  # 48 + 4 + 48 conditioning channels expected
        model.new_cache(make_cond(model, 3, cond_channels=52))
    with pytest.raises(ValueError, match="C = 48"):
        model.forward_frame(torch.randn(B, 16, HW, HW), 0, 0.0, cond, cache)
    with pytest.raises(IndexError, match=r"frame_index must lie in \[0, 3\)"):
        model.forward_frame(x, 3, 0.0, cond, cache)
    with pytest.raises(IndexError, match="next frame is 0"):
        model.forward_frame(x, 1, 0.0, cond, cache)
    with pytest.raises(ValueError, match="timestep"):
        model.forward_frame(x, 0, torch.zeros(B + 1), cond, cache)
    with pytest.raises(ValueError, match="needs clean history frames 0..1"):
        model.forward_parallel(torch.randn(B, 1, C, HW, HW), x[:, None], torch.tensor([2]), torch.zeros(B, 1), cond)
    with pytest.raises(ValueError, match="temporal patch size"):
        from diffusers import WanTransformer3DModel

        CausalWan(WanTransformer3DModel(patch_size=(2, 2, 2), num_attention_heads=1, attention_head_dim=12, in_channels=4, out_channels=2, text_dim=8, ffn_dim=8, num_layers=1))
    with pytest.raises(ValueError, match="window must be >= 1"):
        CausalWan(model.transformer, extra_in_channels=C, window=0)


def _edit_config(directory, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_config_that_does_not_fit_the_weights_fails_at_load(tmp_path):
    CausalWan.tiny(num_layers=3).save_pretrained(tmp_path / "student")
    _edit_config(tmp_path / "student", num_layers=5)  # 2 blocks more than the weights hold
    with pytest.raises(ValueError, match=r"config.json does not match the weights.*tensors the config needs are missing.*blocks\.[34]\."):
        CausalWan.from_pretrained(tmp_path / "student")
    _edit_config(tmp_path / "student", num_layers=2)  # block 2 of the weights has no place
    with pytest.raises(ValueError, match=r"0 tensors the config needs are missing.*unexpected for the config \['blocks\.2\."):
        CausalWan.from_pretrained(tmp_path / "student")
    _edit_config(tmp_path / "student", num_layers=3, ffn_dim=64)  # a shape mismatch: diffusers' message, with the directory
    with pytest.raises(ValueError, match=r"student'? do not fit its config.json.*ffn"):
        CausalWan.from_pretrained(tmp_path / "student")


def test_garbage_files_are_named(tmp_path):
    CausalWan.tiny().save_pretrained(tmp_path / "student")
    config = tmp_path / "student" / "config.json"
    good = config.read_text()
    config.write_text(good[: len(good) // 2])  # cut mid-write
    with pytest.raises(ValueError, match=str(config) + ".*JSON"):
        CausalWan.from_pretrained(tmp_path / "student")
    config.write_text(good)
    causal = tmp_path / "student" / "causal_config.json"
    causal.write_text("[1, 2]")
    with pytest.raises(ValueError, match=str(causal) + ".*extra_in_channels"):
        CausalWan.from_pretrained(tmp_path / "student")
    causal.unlink()
    weights = tmp_path / "student" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match=str(weights) + ".*safetensors"):
        CausalWan.from_pretrained(tmp_path / "student")
