"""AestheticReward against a tiny random CLIP saved to disk (real transformers classes) and a random LAION head."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from rewards.aesthetic import AestheticReward, LaionAestheticHead, clip_preprocess
from rldiff.protocols import Reward
from rldiff.types import Control

VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
LAION_WIDTHS = [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]  # layers.0, 2, 4, 6, 7


def random_head_state(seed: int = 0, in_features: int = 768) -> dict[str, torch.Tensor]:
    """A random head in LAION's key layout (real widths)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for idx, (i, o) in zip((0, 2, 4, 6, 7), [(in_features, 1024)] + LAION_WIDTHS[1:]):
        state[f"layers.{idx}.weight"] = torch.randn(o, i, generator=g) / i**0.5
        state[f"layers.{idx}.bias"] = torch.randn(o, generator=g) * 0.1
    return state


def head_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The LAION MLP written out: five affine maps, no activations (dropout is off at eval)."""
    for idx in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{idx}.weight"].T + state[f"layers.{idx}.bias"]
    return x.squeeze(-1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny CLIPVisionModelWithProjection (projection 768) and a random head saved as .pth and .safetensors."""
    root = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, projection_dim=768)).eval()
    model.save_pretrained(root / "clip")
    state = random_head_state()
    torch.save(state, root / "head.pth")
    save_file(state, str(root / "head.safetensors"))
    return root, model, state


def frames_on_8bit_grid(b: int, t: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Frames with values k / 255, so the uint8 reference path sees exactly the same pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, size, size), generator=g).float() / 255.0


def reference_scores(model, state, frames: torch.Tensor) -> torch.Tensor:
    """transformers' own CLIP image processor (PIL backend) + the model + the head by hand."""
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    b, t = frames.shape[:2]
    images = [(f * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for f in frames.reshape(b * t, 3, *frames.shape[-2:])]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]  # [B*T, 3, 32, 32]
    with torch.no_grad():
        emb = model(pixel_values=pixels).image_embeds
    emb = emb / emb.norm(dim=-1, keepdim=True)
    return head_by_hand(state, emb).view(b, t)


@pytest.mark.parametrize("head_file", ["head.pth", "head.safetensors"])
def test_aesthetic_equals_clip_and_head_by_hand(weights, head_file):
    root, model, state = weights
    reward = AestheticReward(root / "clip", root / head_file, batch_size=4)  # 6 frames -> batches of 4 and 2
    assert isinstance(reward, Reward)
    frames = frames_on_8bit_grid(2, 3)
    control = Control(trajectory=torch.rand(2, 3, 1, 2), visibility=torch.ones(2, 3, 1, dtype=torch.bool), reference=frames[:, 0], prompt=["a", "b"])
    out = reward.score(frames, control)
    assert out.shape == (2, 3)
    assert torch.allclose(out, reference_scores(model, state, frames), atol=1e-4, rtol=1e-4)
    # streaming: per-frame, so any split gives the same values
    reward.reset(control)
    streamed = torch.cat([reward.step(frames[:, :2])["reward"], reward.step(frames[:, 2:])["reward"]], dim=1)
    assert torch.allclose(streamed, out, atol=1e-5)


def test_preprocessing_matches_transformers_processor():
    # resize short side to 32 (bicubic, antialiased) + center crop + CLIP mean/std, against the PIL processor
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    g = torch.Generator().manual_seed(1)
    for h, w in [(40, 56), (56, 40), (64, 64), (20, 30), (33, 32)]:
        smooth = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w), mode="bilinear")
        image = (smooth[0] * 255).round().to(torch.uint8)  # [3, h, w]
        ref = processor(images=image.permute(1, 2, 0).numpy(), return_tensors="pt")["pixel_values"]
        ours = clip_preprocess(image.float()[None] / 255, 32)
        assert ours.shape == ref.shape == (1, 3, 32, 32)
        # PIL resizes in 8-bit fixed point: allow ~1.4 grey levels (1.4 / 255 / std 0.26 = 0.021)
        assert (ours - ref).abs().max() < 0.021, (h, w)


def test_full_clip_model_directory_loads(tmp_path):
    # users point clip_path at a full CLIPModel (e.g. openai/clip-vit-large-patch14): same image embeds
    torch.manual_seed(1)
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, vocab_size=99, bos_token_id=0, eos_token_id=1)
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=24)).eval()
    full.save_pretrained(tmp_path / "clip")
    state = random_head_state(seed=2, in_features=24)
    save_file(state, str(tmp_path / "head.safetensors"))
    reward = AestheticReward(tmp_path / "clip", tmp_path / "head.safetensors")
    frames = frames_on_8bit_grid(1, 2, seed=3)
    pixels = clip_preprocess(frames[0], 32)
    with torch.no_grad():
        emb = full.get_image_features(pixel_values=pixels)
    emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
    assert torch.allclose(reward.embed(frames[0]), emb / emb.norm(dim=-1, keepdim=True), atol=1e-5)


def test_head_layout_and_errors(weights, tmp_path):
    root, _, state = weights
    head = LaionAestheticHead.from_state_dict(state)
    assert [type(m).__name__ for m in head.layers] == ["Linear", "Dropout", "Linear", "Dropout", "Linear", "Dropout", "Linear", "Linear"]
    with pytest.raises(FileNotFoundError, match="clip_path"):
        AestheticReward(tmp_path / "nowhere", root / "head.pth")
    with pytest.raises(FileNotFoundError, match="head_path"):
        AestheticReward(root / "clip", tmp_path / "missing.pth")
    bad = dict(state)
    bad["layers.1.weight"] = bad.pop("layers.0.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match=r"missing \['layers.0.weight'\], unexpected \['layers.1.weight'\]"):
        AestheticReward(root / "clip", tmp_path / "bad.pth").load()
    save_file(random_head_state(in_features=512), str(tmp_path / "h512.safetensors"))
    with pytest.raises(ValueError, match="expects 512-d embeddings, CLIP at .* gives 768-d"):
        AestheticReward(root / "clip", tmp_path / "h512.safetensors").load()
    frames = frames_on_8bit_grid(1, 2)
    control = Control(trajectory=torch.rand(1, 2, 1, 2), visibility=torch.ones(1, 2, 1, dtype=torch.bool), reference=frames[:, 0], prompt=["a"])
    reward = AestheticReward(root / "clip", root / "head.pth")
    with pytest.raises(ValueError, match=r"video values must lie in \[0, 1\]"):
        reward.score(frames * 255, control)
    with pytest.raises(ValueError, match=r"video must be \[B, T, 3, H, W\]"):
        reward.score(frames[0], control)


def test_dtype_by_name(weights):
    root, model, state = weights
    frames = frames_on_8bit_grid(1, 2, seed=5)
    control = Control(trajectory=torch.rand(1, 2, 1, 2), visibility=torch.ones(1, 2, 1, dtype=torch.bool), reference=frames[:, 0], prompt=["a"])
    double = AestheticReward(root / "clip", root / "head.pth", dtype="float64")  # as a Hydra config would pass it
    assert double.dtype == torch.float64
    assert torch.allclose(double.score(frames, control), reference_scores(model, state, frames), atol=1e-4)
    with pytest.raises(ValueError, match="dtype must be a torch dtype or its name, got 'float17'"):
        AestheticReward(root / "clip", root / "head.pth", dtype="float17")


def test_aesthetic_needs_no_control(weights):
    """score(video, None) and reset(None) work and give the same scores as with a control; wrappers follow."""
    from rewards import CompositeReward, IncrementReward, SpritesQualityReward

    root, model, state = weights
    reward = AestheticReward(root / "clip", root / "head.safetensors")
    frames = frames_on_8bit_grid(2, 3, seed=1)
    control = Control(trajectory=torch.rand(2, 3, 1, 2), visibility=torch.ones(2, 3, 1, dtype=torch.bool), reference=frames[:, 0], prompt=["a", "b"])
    with_control = reward.score(frames, control)
    without = reward.score(frames, None)
    assert torch.equal(without, with_control)
    assert torch.allclose(without, reference_scores(model, state, frames), atol=1e-4, rtol=1e-4)
    reward.reset(None)
    assert torch.equal(reward.step(frames)["reward"], with_control)
    # a transform of it and a composite of such rewards need no control either
    increments = IncrementReward(reward).score(frames, None)  # frame 0 keeps its value, then differences
    assert torch.allclose(increments[:, 1:], with_control[:, 1:] - with_control[:, :-1], atol=1e-6)
    assert torch.equal(CompositeReward({"a": reward}).score(frames, None), with_control)
    # a reward that reads the control says so
    with pytest.raises(TypeError, match=r"SpritesQualityReward.reset: control must be an rldiff.types.Control \(SpritesQualityReward reads the control\), got None"):
        SpritesQualityReward().score(frames, None)
    with pytest.raises(TypeError, match=r"IncrementReward.reset: control must be .* got None"):
        IncrementReward(SpritesQualityReward()).reset(None)


def test_truncated_or_garbage_files_are_named(weights, tmp_path):
    import re
    import shutil

    root, _, state = weights
    for name in ("head.safetensors", "head.pth"):
        cut = tmp_path / name
        cut.write_bytes((root / name).read_bytes()[:200])  # a download or copy cut short
        with pytest.raises(ValueError, match=re.escape(str(cut))):
            AestheticReward(root / "clip", cut).load()
    bad = dict(state)
    bad["layers.2.weight"] = bad["layers.2.weight"][:, :7].contiguous()  # no longer chains with layers.0
    save_file(bad, str(tmp_path / "unchained.safetensors"))
    with pytest.raises(ValueError, match="(?s)" + re.escape(str(tmp_path / "unchained.safetensors")) + ".*layers.2.weight"):
        AestheticReward(root / "clip", tmp_path / "unchained.safetensors").load()
    shutil.copytree(root / "clip", tmp_path / "clip")
    (tmp_path / "clip" / "config.json").write_text("{garbage")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "clip" / "config.json")) + ".*JSON"):
        AestheticReward(tmp_path / "clip", root / "head.pth").load()
