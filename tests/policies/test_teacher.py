"""The bidirectional teacher: stock diffusers Wan with control channels, saved in diffusers layout."""

import pytest
import torch
from tensordict import TensorDict

from policies.teacher import BidirectionalWan, tiny_wan_config


def cond(b=2, f=3, c_cond=100, text_dim=32):
    g = torch.Generator().manual_seed(0)
    return TensorDict({"text": torch.randn(b, 5, text_dim, generator=g), "frames": torch.randn(b, f, c_cond, 8, 8, generator=g)}, batch_size=[b])


def test_forward_shape_and_round_trip(tmp_path):
    torch.manual_seed(0)
    teacher = BidirectionalWan.from_config(tiny_wan_config(layers=2, dim=64))
    x, sigma = torch.randn(2, 3, 48, 8, 8), torch.tensor([0.3, 0.9])
    v = teacher(x, sigma, cond())
    assert v.shape == x.shape and torch.isfinite(v).all()
    teacher.save_pretrained(tmp_path / "teacher")
    assert (tmp_path / "teacher" / "diffusion_pytorch_model.safetensors").is_file()
    again = BidirectionalWan.from_pretrained(tmp_path / "teacher")
    assert torch.equal(again(x, sigma, cond()), v)


def test_errors_name_the_culprit(tmp_path):
    teacher = BidirectionalWan.from_config(tiny_wan_config(layers=1, dim=32, heads=2))
    with pytest.raises(ValueError, match="cond\\['frames'\\]"):
        teacher(torch.randn(2, 3, 48, 8, 8), torch.ones(2), cond(c_cond=99))
    with pytest.raises(ValueError, match="C=48"):
        teacher(torch.randn(2, 3, 16, 8, 8), torch.ones(2), cond())
    with pytest.raises(FileNotFoundError, match="config.json"):
        BidirectionalWan.from_pretrained(tmp_path / "missing")


def test_config_that_does_not_fit_the_weights_fails_at_load(tmp_path):
    import json

    BidirectionalWan.from_config(tiny_wan_config(layers=1, dim=32, heads=2)).save_pretrained(tmp_path / "teacher")
    config = tmp_path / "teacher" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"num_layers": 3}))
    with pytest.raises(ValueError, match=r"BidirectionalWan.from_pretrained: .*config.json does not match the weights.*blocks\.[12]\."):
        BidirectionalWan.from_pretrained(tmp_path / "teacher")
    config.write_text("not json")
    with pytest.raises(ValueError, match=str(config) + ".*JSON"):
        BidirectionalWan.from_pretrained(tmp_path / "teacher")
