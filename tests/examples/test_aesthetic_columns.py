"""The aesthetic columns of the evaluation: LAION improved predictor (as the reward) and VBench's linear head / 10, on a tiny random CLIP."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from examples.ar_drag.evaluation import LaionAesthetic, VBenchAesthetic
from rewards.aesthetic import AestheticReward, clip_preprocess

VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("aesthetic_columns")
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, projection_dim=768)).eval()
    model.save_pretrained(root / "clip")
    g = torch.Generator().manual_seed(1)
    widths = [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    improved = {f"layers.{i}.{p}": (torch.randn(o, n, generator=g) / n**0.5 if p == "weight" else torch.zeros(o)) for i, (n, o) in zip((0, 2, 4, 6, 7), widths) for p in ("weight", "bias")}
    torch.save(improved, root / "improved.pth")
    linear = {"weight": torch.randn(1, 768, generator=g), "bias": torch.tensor([5.0])}
    torch.save(linear, root / "linear.pth")
    return root, model, linear


def test_laion_column_is_the_reward_averaged_over_frames(files):
    root, _, _ = files
    video = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    expected = AestheticReward(root / "clip", root / "improved.pth").score(video, None).mean(1)
    assert torch.allclose(LaionAesthetic(str(root / "clip"), str(root / "improved.pth"))(video), expected, atol=1e-5)


def test_vbench_column_is_the_linear_head_over_ten(files):
    root, model, linear = files
    video = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        emb = model(pixel_values=clip_preprocess(video.flatten(0, 1), 32)).image_embeds
    emb = emb / emb.norm(dim=-1, keepdim=True)
    expected = ((emb @ linear["weight"].T + linear["bias"]).squeeze(-1) / 10).view(2, 3).mean(1)  # by hand: w . e + b, / 10, mean over frames
    assert torch.allclose(VBenchAesthetic(str(root / "clip"), str(root / "linear.pth"))(video), expected, atol=1e-5)
    with pytest.raises(ValueError, match="must hold one linear layer"):
        VBenchAesthetic(str(root / "clip"), str(root / "improved.pth"))(video)
