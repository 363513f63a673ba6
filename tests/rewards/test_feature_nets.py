"""Feature networks from local files: tiny TorchScript stand-ins for Inception / I3D / an interpolator, saved here; the Sprites feature net."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rewards.feature_nets import I3DFeatures, InceptionFeatures, TorchScriptInterpolator
from rewards.sprites_features import SpritesClipFeatures, SpritesFeatureNet, SpritesFrameFeatures
from rldiff.checkpoint import save_tensors
from rldiff.metrics import frechet_distance_of


class TinyInception(nn.Module):
    """NVlabs' call convention: ``model(x, return_features=True)`` on [N, 3, 299, 299] in 0..255; records the input range."""

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        assert x.shape[-2:] == (299, 299)
        feats = torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), x[:, 0].mean(dim=(1, 2))], dim=1)  # [N, 3]
        return feats if return_features else feats.sum(1, keepdim=True)


class TinyI3D(nn.Module):
    """StyleGAN-V's call convention: ``model(x, rescale, resize, return_features)`` on [N, 3, T, 224, 224] in [-1, 1]."""

    def forward(self, x: Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False) -> Tensor:
        assert x.shape[1] == 3 and x.shape[-2:] == (224, 224) and not rescale and not resize
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
        return torch.stack([x.mean(dim=(1, 2, 3, 4)), x.amin(dim=(1, 2, 3, 4)), motion], dim=1)  # [N, 3]


class TinyInterpolator(nn.Module):
    def forward(self, before: Tensor, after: Tensor) -> Tensor:
        return 0.25 * before + 0.75 * after


def script(module: nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


def test_inception_features_resize_scale_and_batch(tmp_path):
    extractor = InceptionFeatures(script(TinyInception(), tmp_path / "inception.pt"), batch_size=3)
    frames = torch.full((7, 3, 32, 32), 0.5)
    frames[0] = 1.0
    feats = extractor(frames)
    assert feats.shape == (7, 3)
    assert feats[0, 1] == pytest.approx(255.0) and feats[1, 0] == pytest.approx(127.5)  # [0, 1] -> 0..255
    assert frechet_distance_of(extractor(frames), extractor(frames.clone())) == pytest.approx(0.0, abs=1e-9)


def test_i3d_features_layout_and_range(tmp_path):
    extractor = I3DFeatures(script(TinyI3D(), tmp_path / "i3d.pt"), batch_size=2)
    clips = torch.zeros(3, 4, 3, 16, 16)
    clips[1, 2:] = 1.0  # a jump in the middle
    feats = extractor(clips)
    assert feats.shape == (3, 3)
    assert feats[0, 1] == pytest.approx(-1.0)  # 0 -> -1
    assert feats[1, 2] > 0 and feats[0, 2] == 0  # frames are on the T axis of [N, 3, T, H, W]
    with pytest.raises(ValueError, match=r"clips must be \[N, T, 3, H, W\]"):
        extractor(torch.zeros(2, 3, 16, 16))


def test_interpolator_from_torchscript(tmp_path):
    interp = TorchScriptInterpolator(script(TinyInterpolator(), tmp_path / "interp.pt"))
    a, b = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    assert torch.allclose(interp(a, b), torch.full_like(a, 0.75))


def test_missing_and_garbage_files_name_the_path(tmp_path):
    extractor = InceptionFeatures(tmp_path / "nowhere.pt")  # lazy: nothing happens at construction
    with pytest.raises(FileNotFoundError, match="nowhere.pt.*nothing is downloaded"):
        extractor(torch.zeros(1, 3, 8, 8))
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.pt.*not a readable TorchScript"):
        I3DFeatures(tmp_path / "garbage.pt")(torch.zeros(1, 4, 3, 8, 8))


def test_wrong_feature_shape_is_named(tmp_path):
    class Flat(nn.Module):
        def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
            return x.mean(dim=(1, 2, 3))  # [N], not [N, D]

    with pytest.raises(ValueError, match=r"expected \[2, D\]"):
        InceptionFeatures(script(Flat(), tmp_path / "flat.pt"))(torch.zeros(2, 3, 8, 8))


def test_sprites_feature_net_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    net = SpritesFeatureNet(dim=8, num_frames=4).eval()  # BatchNorm on running statistics, as loaded
    path = tmp_path / "features.safetensors"
    save_tensors(path, net.state_dict(), metadata={"config": '{"dim": 8, "num_frames": 4}'})
    clips = torch.rand(5, 4, 3, 32, 32)
    frames_f, clips_f = SpritesFrameFeatures(path, batch_size=2), SpritesClipFeatures(path, batch_size=2)
    assert torch.allclose(frames_f(clips[:, 0]), net.frames(clips[:, 0]).detach(), atol=1e-6)
    assert torch.allclose(clips_f(clips), net.clips(clips).detach(), atol=1e-6)
    assert frames_f(torch.rand(3, 3, 64, 64)).shape == (3, 8)  # other sizes are resized to 32
    with pytest.raises(ValueError, match=r"clips must be \[N, 4, 3, H, W\]"):
        clips_f(torch.rand(2, 8, 3, 32, 32))
    save_tensors(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, metadata={"config": '{"dim": 8, "num_frames": 4}'})
    with pytest.raises(ValueError, match="other.safetensors does not hold the feature trunks"):
        SpritesFrameFeatures(tmp_path / "other.safetensors")(clips[:, 0])
    with pytest.raises(FileNotFoundError, match="train_sprites_features"):
        SpritesFrameFeatures(tmp_path / "none.safetensors")(clips[:, 0])
