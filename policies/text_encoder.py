"""Text encoders: prompts -> embeddings ``[B, L, D]`` for cross-attention (shared by all frames).

- :class:`UMT5TextEncoder` — Wan's text encoder (transformers ``UMT5EncoderModel``
  + ``AutoTokenizer``) from a local directory, encoded as diffusers' Wan
  pipelines do: pad/truncate to ``max_length`` (512), last hidden state,
  embeddings zeroed past the attention mask.
- :class:`HashTextEncoder` — a weight-free stand-in for CPU worlds and tests
  only: each word maps to a fixed random vector. It carries no language
  understanding; never use it for a real model.

Both return float32 ``[B, max_length, dim]``.
"""

from __future__ import annotations

import os
import re
import zlib

import torch
from torch import Tensor

from policies.local_dirs import require_local_dir

__all__ = ["HashTextEncoder", "UMT5TextEncoder"]


def _check_prompts(prompts, name: str) -> list[str]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{name}: prompts must be a list of str, got {type(prompts).__name__}")
    return list(prompts)


class HashTextEncoder:
    """Weight-free prompt embedding for CPU worlds only (a stand-in, not a language model).

    Words (``\\w+``, lower-cased) hash with CRC32 into ``num_buckets`` rows of a
    fixed table drawn from ``torch.Generator().manual_seed(seed)``; token ``i``
    of a prompt gets its word's row, positions past the words (or past
    ``max_length``) are zero. Deterministic across runs and machines.
    """

    def __init__(self, dim: int = 32, max_length: int = 16, num_buckets: int = 4096, seed: int = 0) -> None:
        for name, value in (("dim", dim), ("max_length", max_length), ("num_buckets", num_buckets)):
            if int(value) != value or value < 1:
                raise ValueError(f"HashTextEncoder: {name} must be a positive int, got {value!r}")
        self.dim = int(dim)
        self.max_length = int(max_length)
        self.num_buckets = int(num_buckets)
        gen = torch.Generator().manual_seed(int(seed))
        self.table = torch.randn(self.num_buckets, self.dim, generator=gen)  # [V, D]

    def token_ids(self, prompt: str) -> list[int]:
        """Bucket ids of the prompt's words (truncated to ``max_length``)."""
        words = re.findall(r"\w+", prompt.lower())[: self.max_length]
        return [zlib.crc32(w.encode("utf-8")) % self.num_buckets for w in words]

    def encode(self, prompts: list[str]) -> Tensor:
        """``B`` prompts -> ``[B, max_length, dim]`` float32."""
        prompts = _check_prompts(prompts, "HashTextEncoder.encode")
        out = torch.zeros(len(prompts), self.max_length, self.dim)  # [B, L, D]
        for b, prompt in enumerate(prompts):
            ids = self.token_ids(prompt)
            if ids:
                out[b, : len(ids)] = self.table[torch.tensor(ids)]
        return out


class UMT5TextEncoder:
    """Wan's UMT5 text encoder: ``[B]`` prompts -> ``[B, max_length, d_model]`` float32.

    Build with ``UMT5TextEncoder(model, tokenizer)`` or
    ``UMT5TextEncoder.from_pretrained(local_dir)``. Tokenization pads to
    ``max_length`` and truncates, with special tokens; hidden states past each
    prompt's attention mask are set to zero (what the Wan pipelines feed the
    transformer). The model is frozen and runs under ``no_grad``.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 512) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.dim = int(model.config.d_model)

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | os.PathLike,
        tokenizer_dir: str | os.PathLike | None = None,
        max_length: int = 512,
        torch_dtype: torch.dtype | None = None,
    ) -> "UMT5TextEncoder":
        """Load from local directories (``tokenizer_dir`` defaults to ``local_dir``).

        For a diffusers Wan pipeline root pass ``root/text_encoder`` and ``root/tokenizer``.
        """
        from transformers import AutoTokenizer, UMT5EncoderModel

        model_dir = require_local_dir(
            local_dir, "UMT5TextEncoder model", ("config.json",), ("model.safetensors", "model.safetensors.index.json")
        )
        tok_dir = require_local_dir(
            tokenizer_dir if tokenizer_dir is not None else local_dir,
            "UMT5TextEncoder tokenizer",
            ("tokenizer_config.json",),
            ("tokenizer.json", "spiece.model"),
        )
        kwargs = {"local_files_only": True}
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        model = UMT5EncoderModel.from_pretrained(model_dir, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        return cls(model, tokenizer, max_length=max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """``B`` prompts -> ``[B, max_length, d_model]`` float32, zero past each prompt's tokens."""
        prompts = _check_prompts(prompts, "UMT5TextEncoder.encode")
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids = tokens["input_ids"].to(self.device)  # [B, L]
        mask = tokens["attention_mask"].to(self.device)  # [B, L]
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D]
        return hidden.float() * mask[..., None].float()
