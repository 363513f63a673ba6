"""Control encoders: heatmaps, ControlEncoder layout, UMT5/hash text encoders, CLIP image encoder.

The UMT5, tokenizer and CLIP models are the real transformers classes with tiny
random configs, saved to tmp dirs and reloaded through ``from_pretrained``.
"""

import math

import pytest
import torch

from rldiff.types import Control

from policies.codecs import PixelCodec, WanVAECodec
from policies.conditioning import ControlEncoder
from policies.heatmaps import track_colours, trajectory_heatmaps
from policies.image_encoder import CLIPImageEncoder, clip_preprocess, resize_short_side
from policies.text_encoder import HashTextEncoder, UMT5TextEncoder

WORDS = "a red ball moves left right the cat jumps".split()


def make_control(b=2, t=8, k=3, size=32, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return Control(
        trajectory=torch.rand(b, t, k, 2, generator=g),
        visibility=torch.rand(b, t, k, generator=g) > 0.2,
        reference=torch.rand(b, 3, size, size, generator=g),
        prompt=["a red ball moves left", "the cat jumps"][:b],
        **kw,
    )


# -- heatmaps ------------------------------------------------------------------------


def test_track_colours_by_hand():
    c = track_colours(3)
    # hue 0 -> red; hue 0.618 -> sector R = 2.708 (R = 0), G = 0.708 (G = 1 - 0.708), B = 4.708 (B = 1)
    assert torch.allclose(c[0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(c[1], torch.tensor([0.0, 1 - 0.7082, 1.0]), atol=1e-4)
    assert torch.equal(track_colours(5)[:3], c)  # a track's colour does not depend on K


def test_heatmap_peaks_at_the_track_point():
    # x = 2.5/8 -> pixel column 2.5 - 0.5 = 2; y = 5.5/8 -> row 5 (pixel-centre convention)
    traj = torch.tensor([2.5 / 8, 5.5 / 8]).view(1, 1, 1, 2)
    vis = torch.ones(1, 1, 1, dtype=torch.bool)
    video = trajectory_heatmaps(traj, vis, height=8, width=8, sigma=1.0)
    assert video.shape == (1, 1, 3, 8, 8)
    red = video[0, 0, 0]
    assert red[5, 2] == 1.0 and red.argmax() == 5 * 8 + 2
    # one pixel away: exp(-1 / (2 sigma^2)) = exp(-0.5); diagonal: exp(-1)
    assert math.isclose(float(red[5, 3]), math.exp(-0.5), rel_tol=1e-5)
    assert math.isclose(float(red[4, 1]), math.exp(-1.0), rel_tol=1e-5)
    assert video[0, 0, 1:].abs().max() == 0  # track 0 is pure red
    hidden = trajectory_heatmaps(traj, ~vis, 8, 8, 1.0)
    assert hidden.abs().max() == 0  # invisible points draw nothing


def test_heatmap_two_tracks_combine_by_maximum():
    traj = torch.tensor([[0.5 / 4, 0.5 / 4], [0.5 / 4, 0.5 / 4]]).view(1, 1, 2, 2)  # both at pixel (0, 0)
    video = trajectory_heatmaps(traj, torch.ones(1, 1, 2, dtype=torch.bool), 4, 4, sigma=1.0)
    colours = track_colours(2)
    assert torch.allclose(video[0, 0, :, 0, 0], torch.maximum(colours[0], colours[1]))
    with pytest.raises(ValueError, match="visibility must be"):
        trajectory_heatmaps(traj, torch.ones(1, 2, 2, dtype=torch.bool), 4, 4, 1.0)


# -- ControlEncoder ---------------------------------------------------------------------


def test_control_encoder_layout_with_pixel_codec():
    codec = PixelCodec(factor=4)
    encoder = ControlEncoder(codec, text_encoder=HashTextEncoder(dim=8, max_length=6), mask_channels=4)
    control = make_control()
    assert encoder.cond_channels == 4 + 48 + 48
    cond = encoder.encode(control, num_frames=8, generator=torch.Generator().manual_seed(0))
    assert cond.batch_size == torch.Size([2]) and "image" not in cond.keys()
    frames = cond["frames"]
    assert frames.shape == (2, 8, 100, 8, 8) and frames.dtype == torch.float32
    assert cond["text"].shape == (2, 6, 8)
    mask, ref, traj = frames[:, :, :4], frames[:, :, 4:52], frames[:, :, 52:]
    assert mask[:, 0].eq(1).all() and mask[:, 1:].eq(0).all()
    assert torch.equal(ref[:, 0], codec.encode_image(control.reference))
    assert torch.equal(traj, codec.encode(encoder.trajectory_video(control)))
    # placeholders: a standard-normal draw, not the reference, reproducible from the seed
    assert (ref[:, 1:] - ref[:, :1]).abs().min() < 1 and (ref[:, 1:] - ref[:, :1]).abs().mean() > 0.5
    expected = torch.randn(2, 7, 48, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ref[:, 1:], expected)
    again = encoder.encode(control, 8, generator=torch.Generator().manual_seed(0))["frames"]
    other = encoder.encode(control, 8, generator=torch.Generator().manual_seed(1))["frames"]
    assert torch.equal(again, frames)
    assert not torch.equal(other[:, 1:, 4:52], frames[:, 1:, 4:52])
    assert torch.equal(other[:, :, 52:], frames[:, :, 52:]) and torch.equal(other[:, 0], frames[:, 0])


def test_control_encoder_aligns_trajectory_with_wan_latent_frames(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )
    codec = WanVAECodec(vae)
    embeds = torch.randn(2, 5, 8)
    encoder = ControlEncoder(codec, mask_channels=4, heatmap_sigma=1.5)
    control = make_control(t=9, size=16, text_embeds=embeds)  # 9 pixel frames = 1 + 2 * 4 -> F = 3
    cond = encoder.encode(control, num_frames=3, generator=torch.Generator().manual_seed(0))
    assert cond["frames"].shape == (2, 3, 4 + 4 + 4, 4, 4)
    assert torch.equal(cond["text"], embeds)  # precomputed embeddings pass through
    assert torch.allclose(cond["frames"][:, :, 8:], codec.encode(encoder.trajectory_video(control)))
    with pytest.raises(ValueError, match=r"T = 9 pixel frames.*num_frames = 4.*T = 1 \+ \(F - 1\) \* 4 = 13"):
        encoder.encode(control, num_frames=4)


def test_control_encoder_errors():
    encoder = ControlEncoder(PixelCodec(factor=4))
    with pytest.raises(ValueError, match="text_embeds is None and no text_encoder"):
        encoder.encode(make_control(), num_frames=8)
    with pytest.raises(ValueError, match="T = 8 pixel frames.*num_frames = 6"):
        encoder.encode(make_control(), num_frames=6)
    with pytest.raises(ValueError, match="heatmap_sigma"):
        ControlEncoder(PixelCodec(), heatmap_sigma=0.0)
    with pytest.raises(ValueError, match="NaN"):  # Control validates the trajectory itself
        make_control().with_(trajectory=torch.full((2, 8, 3, 2), float("nan")))


# -- text encoders -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def umt5_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    path = tmp_path_factory.mktemp("umt5")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
    )
    UMT5EncoderModel(config).save_pretrained(path)
    return path


def test_umt5_text_encoder_from_saved_dir(umt5_dir):
    from transformers import AutoTokenizer, UMT5EncoderModel

    encoder = UMT5TextEncoder.from_pretrained(umt5_dir, max_length=8)
    out = encoder.encode(["a red ball", "the cat jumps left zzz"])
    assert out.shape == (2, 8, 16) and out.dtype == torch.float32
    # "a red ball" + </s> = 4 tokens; "the cat jumps left <unk>" + </s> = 6 tokens; zero after
    assert out[0, 4:].abs().max() == 0 and out[0, :4].abs().sum(-1).min() > 0
    assert out[1, 6:].abs().max() == 0 and out[1, :6].abs().sum(-1).min() > 0
    # the same numbers as running the reloaded transformers classes by hand
    tok = AutoTokenizer.from_pretrained(umt5_dir)
    model = UMT5EncoderModel.from_pretrained(umt5_dir).eval()
    ids = tok(["a red ball"], padding="max_length", max_length=8, return_tensors="pt")
    assert ids["input_ids"][0].tolist() == [3, 4, 5, 1, 0, 0, 0, 0]
    with torch.no_grad():
        ref = model(**ids).last_hidden_state[0, :4]
    assert torch.allclose(out[0, :4], ref, atol=1e-6)


def test_umt5_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UMT5TextEncoder.from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*" + str(tmp_path.name)):
        UMT5TextEncoder.from_pretrained(tmp_path)


def test_hash_text_encoder_is_deterministic_and_padded():
    enc = HashTextEncoder(dim=8, max_length=5, seed=3)
    out = enc.encode(["Red ball", "red cat, red"])
    assert out.shape == (2, 5, 8)
    assert torch.equal(out[0, 0], out[1, 0]) and torch.equal(out[1, 0], out[1, 2])  # "red" == "Red"
    assert not torch.equal(out[0, 1], out[1, 1])  # "ball" != "cat"
    assert out[0, 2:].abs().max() == 0 and out[1, 3:].abs().max() == 0
    assert torch.equal(HashTextEncoder(dim=8, max_length=5, seed=3).encode(["Red ball"]), out[:1])
    with pytest.raises(ValueError, match="list of str"):
        enc.encode("red ball")


# -- CLIP image encoder ---------------------------------------------------------------------


def test_clip_preprocess_by_hand():
    # H = 2, W = 6, a horizontal ramp j / 5. Short side already 2 -> size (2, int(2 * 6 / 2) = 6): identity.
    ramp = (torch.arange(6.0) / 5).expand(1, 3, 2, 6)
    out = clip_preprocess(ramp, size=2, crop_size=2)
    assert out.shape == (1, 3, 2, 2)
    # centre crop: left = (6 - 2) // 2 = 2 -> columns 2, 3 = 0.4, 0.6; red: (0.4 - 0.48145466) / 0.26862954
    assert math.isclose(float(out[0, 0, 0, 0]), (0.4 - 0.48145466) / 0.26862954, rel_tol=1e-5)
    assert math.isclose(float(out[0, 2, 1, 1]), (0.6 - 0.40821073) / 0.27577711, rel_tol=1e-5)
    # resize: 40 x 56 -> short side 32, long side int(32 * 56 / 40) = 44
    assert resize_short_side(torch.rand(1, 3, 40, 56), 32).shape == (1, 3, 32, 44)
    assert resize_short_side(torch.rand(1, 3, 57, 40), 32).shape == (1, 3, 45, 32)


def test_clip_preprocess_matches_the_transformers_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 56), indexing="ij")
    image = (torch.stack([xx, yy, (xx + yy) / 2])[None] * 255).round() / 255  # [1, 3, 40, 56], 8-bit values
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref = processor(images=[(image[0] * 255).round().byte().permute(1, 2, 0).numpy()], return_tensors="pt")["pixel_values"]
    ours = clip_preprocess(image, size=32, crop_size=32)
    # the processor rounds to uint8 after PIL's resize: agreement to ~3/255 before normalization
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert (ours - ref).abs().max() < 0.02


def test_clip_image_encoder_from_saved_dir(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=8,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path)
    encoder = CLIPImageEncoder.from_pretrained(tmp_path)
    images = torch.rand(2, 3, 40, 48)
    feats = encoder.encode(images)
    assert feats.shape == (2, 17, 16) and encoder.num_tokens == 17  # (32 / 8)^2 + 1
    model = CLIPVisionModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        hidden = model(pixel_values=clip_preprocess(images, 32, 32), output_hidden_states=True).hidden_states
    assert torch.allclose(feats, hidden[-2], atol=1e-6) and not torch.allclose(feats, hidden[-1])
    # through the ControlEncoder: "image" present
    cond = ControlEncoder(PixelCodec(factor=4), HashTextEncoder(dim=8), image_encoder=encoder).encode(make_control(), 8)
    assert cond["image"].shape == (2, 17, 16)


def test_precomputed_image_embeds_pass_through_without_an_image_encoder():
    embeds = torch.randn(2, 5, 12)
    encoder = ControlEncoder(PixelCodec(factor=4), HashTextEncoder(dim=8))
    assert torch.equal(encoder.encode(make_control(image_embeds=embeds), 8)["image"], embeds)
    assert "image" not in encoder.encode(make_control(), 8).keys()
