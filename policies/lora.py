"""LoRA adapters (through ``peft``) on a Wan transformer's attention and FFN projections.

AR-Drag fine-tunes every weight; users with fewer GPUs train low-rank adapters
instead: the base weights are frozen (no gradients, no optimizer state) and the
KL reference is the same model with its adapters switched off
(:class:`BaseReference`), so nothing is copied.

- :func:`add_lora` injects adapters into ``model.transformer``'s blocks (the
  model is a ``policies.CausalWan`` or ``policies.teacher.BidirectionalWan``);
- :func:`save_lora` / :func:`load_lora` write / read the adapters alone
  (``adapter_config.json`` + ``adapter_model.safetensors``, peft's layout);
- :func:`merge_lora` folds them into the base weights, leaving a plain model
  whose ``save_pretrained`` writes an ordinary diffusers directory;
- :func:`adapters_disabled` is a context in which the model is its base.

Needs the ``lora`` extra (``pip install rldiff[lora]``, i.e. ``peft``);
importing this module does not import ``peft``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["LORA_TARGETS", "add_lora", "lora_layers", "adapters_disabled", "save_lora", "load_lora", "merge_lora", "BaseReference"]

# the projections of each diffusers WanTransformerBlock: self- and cross-attention (text and image), FFN in and out
LORA_TARGETS = r".*blocks\.\d+\.(attn1\.(to_q|to_k|to_v|to_out\.0)|attn2\.(to_q|to_k|to_v|to_out\.0|add_k_proj|add_v_proj)|ffn\.net\.(0\.proj|2))"
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def _peft():
    try:
        import peft
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("LoRA needs peft: pip install 'rldiff[lora]' (or pip install peft)") from e
    return peft


def _transformer(model: nn.Module) -> nn.Module:
    tr = getattr(model, "transformer", None)
    if tr is None or not hasattr(tr, "blocks"):
        raise TypeError(f"LoRA expects a model with a Wan .transformer (CausalWan, BidirectionalWan), got {type(model).__name__}")
    return tr


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """The adapter-carrying layers of ``model`` (peft ``BaseTunerLayer``s)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: str = LORA_TARGETS, dropout: float = 0.0) -> nn.Module:
    """Inject rank-``rank`` adapters (scale ``alpha / rank``; ``alpha`` None: ``rank``) and freeze all else.

    The adapters start at zero (peft's default init: ``B = 0``), so the model's
    output is unchanged until the first update. Returns ``model`` (changed in place).
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"add_lora: rank must be a positive int, got {rank!r}")
    peft = _peft()
    tr = _transformer(model)
    if lora_layers(tr):
        raise ValueError("add_lora: the model already has LoRA adapters (merge_lora them or load a fresh model)")
    config = peft.LoraConfig(r=rank, lora_alpha=float(alpha if alpha is not None else rank), target_modules=targets, lora_dropout=float(dropout))
    peft.inject_adapter_in_model(config, tr)
    if not lora_layers(tr):
        raise ValueError(f"add_lora: targets {targets!r} matched no linear layer of the transformer")
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
    tr._rldiff_lora_config = config  # save_lora writes it
    return model


@contextlib.contextmanager
def adapters_disabled(model: nn.Module):
    """Within the context ``model`` computes its base output (adapters off); they are back on after."""
    layers = lora_layers(model)
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)  # also makes the adapter weights trainable again


def save_lora(model: nn.Module, out_dir: str | os.PathLike, write: bool = True) -> Path:
    """Write the adapters alone: ``adapter_config.json`` and ``adapter_model.safetensors`` (full tensors).

    Under FSDP2 every rank calls it (the shards are gathered) and one writes (``write``).
    """
    from safetensors.torch import save_file
    from torch.distributed.tensor import DTensor

    peft = _peft()
    tr = _transformer(model)
    config = getattr(tr, "_rldiff_lora_config", None)
    if config is None:
        raise ValueError("save_lora: the model has no adapters from add_lora / load_lora")
    out = Path(out_dir)
    state = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().to("cpu").contiguous() for k, v in peft.get_peft_model_state_dict(tr).items()}
    if not write:
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / ADAPTER_WEIGHTS))
    (out / ADAPTER_CONFIG).write_text(json.dumps(config.to_dict(), indent=2, default=list))
    return out


def load_lora(model: nn.Module, lora_dir: str | os.PathLike) -> nn.Module:
    """Inject the adapters saved by :func:`save_lora` into a base ``model`` and load their weights (strictly)."""
    from safetensors.torch import load_file

    peft = _peft()
    lora_dir = Path(lora_dir)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (lora_dir / name).is_file():
            raise FileNotFoundError(f"load_lora: {lora_dir / name} not found (a directory written by save_lora holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    cfg = json.loads((lora_dir / ADAPTER_CONFIG).read_text())
    add_lora(model, rank=int(cfg["r"]), alpha=float(cfg["lora_alpha"]), targets=cfg["target_modules"], dropout=float(cfg.get("lora_dropout", 0.0)))
    tr = _transformer(model)
    state = load_file(str(lora_dir / ADAPTER_WEIGHTS))
    result = peft.set_peft_model_state_dict(tr, state)
    if result.unexpected_keys:
        raise ValueError(f"load_lora: {lora_dir} holds weights this model has no adapter for: {sorted(result.unexpected_keys)[:5]}")
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing:
        raise ValueError(f"load_lora: {lora_dir} lacks adapter weights {sorted(missing)[:5]}")
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and remove them: a plain model (``save_pretrained``: a diffusers dir)."""
    tr = _transformer(model)
    names = [n for n, m in tr.named_modules() if m in lora_layers(tr)]
    if not names:
        raise ValueError("merge_lora: the model has no LoRA adapters")
    for name in names:
        layer = tr.get_submodule(name)
        layer.merge()
        parent, _, leaf = name.rpartition(".")
        setattr(tr.get_submodule(parent) if parent else tr, leaf, layer.get_base_layer())
    if hasattr(tr, "_rldiff_lora_config"):
        del tr._rldiff_lora_config
    model.requires_grad_(True)
    return model


class BaseReference:
    """The KL reference of a LoRA policy: the policy itself with its adapters off (no copy, no extra memory).

    ``rldiff.GRPOTrainer`` runs its own (possibly sharded) runner of the policy inside
    ``policy_context()`` for the KL term; ``recompute(rollout, control)`` is the same on
    one process (``policy.recompute`` with the adapters off, no gradients).
    """

    def __init__(self, policy: nn.Module) -> None:
        if not lora_layers(policy):
            raise ValueError("BaseReference: the policy has no LoRA adapters (full fine-tuning keeps a frozen copy as reference)")
        self.policy = policy

    def policy_context(self):
        """The context in which the policy is its base: adapters off."""
        return adapters_disabled(self.policy)

    @torch.no_grad()
    def recompute(self, rollout, control):
        with adapters_disabled(self.policy):
            return self.policy.recompute(rollout, control)
