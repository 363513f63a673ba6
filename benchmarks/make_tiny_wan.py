"""Build a complete diffusers-format Wan2.1 I2V directory at full structure with tiny sizes (random weights).

    python benchmarks/make_tiny_wan.py OUT_DIR

Writes what a real Wan I2V directory (e.g. a 1.3B community I2V release) holds, with
the real channel layout and tiny widths, so the README's "use your own model"
command runs end to end on CPU in seconds:

    OUT_DIR/model_index.json
    OUT_DIR/transformer/      WanTransformer3DModel, I2V: in 36 = 16 noisy + 4 mask + 16 reference latents, image tokens
    OUT_DIR/vae/              AutoencoderKLWan, z_dim 16, 8x spatial / 4x temporal compression
    OUT_DIR/text_encoder/     UMT5EncoderModel
    OUT_DIR/tokenizer/        a fast tokenizer (word level, the words of the Sprites-Drag prompts)
    OUT_DIR/image_encoder/    CLIPVisionModel (+ preprocessor_config.json)
    OUT_DIR/scheduler/        UniPC flow-matching scheduler config
    OUT_DIR/aesthetic/clip/   CLIPVisionModelWithProjection (projection 768) and aesthetic/head.pth, the LAION head

Nothing is downloaded. Used by tests/examples/test_wan_own_model.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

LATENT = 16  # Wan's z_dim
WORDS = "a the red green blue yellow white black small large circle square sprite moves left right up down on background and".split()


def _tokenizer(out: Path) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=32).save_pretrained(out)
    return len(vocab)


def make_tiny_wan(out_dir: str | Path, seed: int = 0, dim: int = 32, layers: int = 2, text_dim: int = 16, image_dim: int = 16) -> Path:
    """Write the directory (see module doc) and return its path."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    heads = 2
    WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=dim // heads, in_channels=2 * LATENT + 4, out_channels=LATENT,
        text_dim=text_dim, freq_dim=32, ffn_dim=2 * dim, num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
        image_dim=image_dim, added_kv_proj_dim=dim, rope_max_seq_len=1024,
    ).save_pretrained(out / "transformer")  # fmt: skip
    AutoencoderKLWan(base_dim=8, z_dim=LATENT, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]).save_pretrained(out / "vae")
    vocab = _tokenizer(out / "tokenizer")
    umt5 = UMT5Config(
        vocab_size=vocab, d_model=text_dim, d_kv=4, d_ff=2 * text_dim, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    UMT5EncoderModel(umt5).save_pretrained(out / "text_encoder")
    vision = dict(hidden_size=image_dim, intermediate_size=2 * image_dim, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(out / "image_encoder")
    pre = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    (out / "image_encoder" / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "image_encoder": ["transformers", "CLIPVisionModel"], "image_processor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    }  # fmt: skip
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    # the aesthetic reward's parts: CLIP with a 768-d projection and the LAION head (layers.{0,2,4,6,7})
    CLIPVisionModelWithProjection(CLIPVisionConfig(**vision, projection_dim=768)).save_pretrained(out / "aesthetic" / "clip")
    sizes = [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    head = {}
    for idx, (i, o) in zip((0, 2, 4, 6, 7), sizes):
        head[f"layers.{idx}.weight"] = torch.randn(o, i) / i**0.5
        head[f"layers.{idx}.bias"] = torch.zeros(o)
    torch.save(head, out / "aesthetic" / "head.pth")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_tiny_wan(args.out_dir, seed=args.seed))
