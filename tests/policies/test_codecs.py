"""Codecs: PixelCodec exactness, WanVAECodec (real diffusers AutoencoderKLWan, tiny random config) streaming."""

import pytest
import torch

from rldiff.protocols import Codec, StreamingDecoder

from policies.codecs import PixelCodec, WanVAECodec

# A tiny Wan VAE: 2 spatial downsamples (factor 4), 2 temporal (factor 4), z_dim 4.
TINY_VAE = dict(
    base_dim=8,
    z_dim=4,
    dim_mult=[1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[True, True],
    latents_mean=[0.1, -0.2, 0.3, 0.0],
    latents_std=[1.5, 0.5, 2.0, 1.0],
)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("wan_vae")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wan(vae_dir):
    return WanVAECodec.from_pretrained(vae_dir)


# -- PixelCodec -------------------------------------------------------------------


def test_pixel_codec_is_a_codec_and_layout_by_hand():
    codec = PixelCodec(factor=2)
    assert isinstance(codec, Codec) and isinstance(codec.stream_decoder(), StreamingDecoder)
    assert codec.latent_channels == 12  # 3 * 2^2
    video = torch.rand(1, 1, 3, 4, 4)
    z = codec.encode(video)
    assert z.shape == (1, 1, 12, 2, 2)
    # pixel_unshuffle: latent channel c*4 + i*2 + j at (h, w) = 2 * pixel[c, 2h+i, 2w+j] - 1
    assert torch.allclose(z[0, 0, 0, 1, 0], 2 * video[0, 0, 0, 2, 0] - 1)
    assert torch.allclose(z[0, 0, 1 * 4 + 1 * 2 + 0, 0, 1], 2 * video[0, 0, 1, 1, 2] - 1)
    assert torch.allclose(z[0, 0, 2 * 4 + 1 * 2 + 1, 1, 1], 2 * video[0, 0, 2, 3, 3] - 1)


@pytest.mark.parametrize("temporal_factor", [1, 2])
def test_pixel_codec_round_trip_and_streaming_exact(temporal_factor):
    codec = PixelCodec(factor=4, temporal_factor=temporal_factor)
    t = 1 + 3 * temporal_factor
    video = torch.rand(2, t, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    z = codec.encode(video)
    assert z.shape == (2, 4, 48 * temporal_factor, 4, 6)
    assert (codec.decode(z) - video).abs().max() <= 1e-6
    dec = codec.stream_decoder()
    chunks = [dec.decode_next(z[:, i]) for i in range(4)]
    assert [c.shape[1] for c in chunks] == [1] + [temporal_factor] * 3
    assert torch.equal(torch.cat(chunks, dim=1), codec.decode(z))
    enc = codec.stream_encoder()
    streamed = [enc.encode_next(video[:, :1])]
    streamed += [enc.encode_next(video[:, 1 + i * temporal_factor : 1 + (i + 1) * temporal_factor]) for i in range(3)]
    assert torch.equal(torch.stack(streamed, dim=1), z)


def test_pixel_codec_encode_image_and_decode_clamps():
    codec = PixelCodec(factor=4)
    image = torch.rand(3, 3, 8, 8)
    assert torch.equal(codec.encode_image(image), codec.encode(image[:, None])[:, 0])
    # a generated latent outside [-1, 1]: +3 -> (3+1)/2 = 2 -> clamped to 1; -3 -> -1 -> 0
    z = torch.full((1, 1, 48, 2, 2), 3.0)
    z[:, :, :24] = -3.0
    out = codec.decode(z)
    assert out.min() == 0.0 and out.max() == 1.0


def test_pixel_codec_errors_name_the_culprit():
    codec = PixelCodec(factor=4, temporal_factor=2)
    with pytest.raises(ValueError, match="divisible by the codec's spatial factor 4"):
        codec.encode(torch.rand(1, 3, 3, 10, 8))
    with pytest.raises(ValueError, match=r"T = 4 pixel frames"):
        codec.encode(torch.rand(1, 4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        codec.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        codec.encode(torch.rand(1, 3, 3, 8, 8) * 2)
    with pytest.raises(ValueError, match="C = 96"):
        codec.decode(torch.rand(1, 2, 48, 2, 2))
    with pytest.raises(ValueError, match="expects t = 1"):
        codec.stream_encoder().encode_next(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="factor"):
        PixelCodec(factor=0)


# -- WanVAECodec -------------------------------------------------------------------


def test_wan_codec_factors_and_shapes(wan):
    assert isinstance(wan, Codec)
    assert (wan.latent_channels, wan.spatial_factor, wan.temporal_factor) == (4, 4, 4)
    video = torch.rand(2, 9, 3, 16, 8)
    z = wan.encode(video)
    assert z.shape == (2, 3, 4, 4, 2)  # F = 1 + (9 - 1) / 4
    out = wan.decode(z)
    assert out.shape == (2, 9, 3, 16, 8) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert wan.encode_image(video[:, 0]).shape == (2, 4, 4, 2)


def test_wan_codec_normalizes_like_the_diffusers_pipelines(wan):
    vae = wan.vae
    video = torch.rand(1, 5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    x = video.permute(0, 2, 1, 3, 4) * 2 - 1  # [B, 3, T, H, W] in [-1, 1]
    mean = torch.tensor(TINY_VAE["latents_mean"]).view(1, 4, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(TINY_VAE["latents_std"]).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mode()
        expected = ((raw - mean) * inv_std).permute(0, 2, 1, 3, 4)  # pipeline_wan_i2v's latent_condition
    z = wan.encode(video)
    assert torch.allclose(z, expected, atol=1e-6)
    with torch.no_grad():
        pixels = vae.decode(z.permute(0, 2, 1, 3, 4) / inv_std + mean).sample  # the pipeline's decode
    assert torch.allclose(wan.decode(z), (pixels.permute(0, 2, 1, 3, 4) + 1) / 2, atol=1e-6)


def test_wan_streaming_decode_equals_full_decode(wan):
    z = torch.randn(2, 4, 4, 4, 4, generator=torch.Generator().manual_seed(3))  # 4 latent frames
    full = wan.decode(z)
    assert full.shape[1] == 13
    dec = wan.stream_decoder()
    chunks = [dec.decode_next(z[:, i]) for i in range(4)]
    assert [c.shape[1] for c in chunks] == [1, 4, 4, 4]
    assert (torch.cat(chunks, dim=1) - full).abs().max() <= 1e-5
    # The carried cache matters: the same latent frame 1 after a different frame 0 decodes differently
    other = wan.stream_decoder()
    other.decode_next(z[:, 0] + 1.0)
    assert (other.decode_next(z[:, 1]) - chunks[1]).abs().max() > 1e-4


def test_wan_streaming_encode_equals_full_encode(wan):
    video = torch.rand(1, 9, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    enc = wan.stream_encoder()
    streamed = [enc.encode_next(video[:, :1]), enc.encode_next(video[:, 1:5]), enc.encode_next(video[:, 5:9])]
    assert (torch.stack(streamed, dim=1) - wan.encode(video)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="expects t = 4"):
        enc.encode_next(video[:, :1])


def test_wan_codec_round_trip_through_disk_and_errors(vae_dir, wan, tmp_path):
    again = WanVAECodec.from_pretrained(vae_dir)
    video = torch.rand(1, 5, 3, 8, 8)
    assert torch.equal(again.encode(video), wan.encode(video))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WanVAECodec.from_pretrained(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        WanVAECodec.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="spatial factor 4"):
        wan.encode(torch.rand(1, 1, 3, 6, 8))
    with pytest.raises(ValueError, match="T = 3 pixel frames"):
        wan.encode(torch.rand(1, 3, 3, 8, 8))
