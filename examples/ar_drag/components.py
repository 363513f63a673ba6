"""The AR-Drag world's config groups and the builders they name as ``_target_``.

Every option is a flat dataclass whose fields are the keyword arguments of its
``_target_``; a job builds each part with ``hydra.utils.instantiate`` and hands
in the parts it depends on (``codec=``, ``step=``, ``tracker=``):

  policy:    sprites_student (the bundled Sprites-Drag student) | wan (a diffusers Wan I2V dir)
  step:      cps | euler_maruyama          (the policy's stochastic step, rldiff.flow)
  codec:     pixel | wan_vae
  controls:  sprites                       (Sprites-Drag; split=heldout for evaluation)
  tracker:   lucas_kanade | cotracker      (the reward's and the evaluation's point tracker)
  reward:    sprites (trajectory hinge + log Sprites quality) | aesthetic (trajectory hinge + LAION aesthetic)
  advantage: per_term_renormalized | per_term | group   (rldiff.advantages)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

BUNDLE = Path(__file__).resolve().parents[1] / "pretrained" / "sprites_drag"


# ----------------------------------------------------------------------------- policy
def _causal_dir(path: str | Path, hint: str = "") -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"policy.path: no Wan/CausalWan directory at {path} (expected config.json){hint}")
    return path


def memory_options(model, checkpointing: bool, lora_rank: int, lora_alpha: float | None):
    """Turn on per-block activation checkpointing and inject LoRA adapters (``lora_rank > 0``) into ``model``."""
    model.checkpointing = bool(checkpointing)
    if lora_rank:
        from policies.lora import add_lora

        add_lora(model, rank=lora_rank, alpha=lora_alpha)
    return model


def sprites_student(
    codec, step, path: str, window: int | None, sink: int | None, text_dim: int, heatmap_sigma: float, num_steps: int, shift: float,
    checkpointing: bool = False, compute_dtype: str = "float32", lora_rank: int = 0, lora_alpha: float | None = None,
):  # fmt: skip
    """``FlowPolicy`` around the bundled Sprites-Drag ``CausalWan`` with hash text embeddings."""
    from policies import CausalWan, FlowPolicy
    from policies.conditioning import ControlEncoder
    from policies.text_encoder import HashTextEncoder

    hint = " (the bundled student: run examples/ar_drag_distill.py with export_dir, see docs/results.md)"
    model = memory_options(CausalWan.from_pretrained(_causal_dir(path, hint), window=window, sink=sink), checkpointing, lora_rank, lora_alpha)
    encoder = ControlEncoder(codec, HashTextEncoder(dim=text_dim), mask_channels=4, heatmap_sigma=heatmap_sigma)
    return FlowPolicy(model, encoder, step=step, num_steps=num_steps, shift=shift, compute_dtype=compute_dtype)


def wan_student(
    codec, step, path: str, text_encoder_path: str, tokenizer_path: str | None, image_encoder_path: str | None,
    extra_in_channels: int, heatmap_sigma: float, num_steps: int, shift: float, dtype: str, window: int | None, sink: int | None,
    checkpointing: bool = False, compute_dtype: str = "float32", lora_rank: int = 0, lora_alpha: float | None = None,
):  # fmt: skip
    """``FlowPolicy`` around a ``CausalWan`` from a diffusers Wan I2V directory, with UMT5 text and CLIP image encoders."""
    from policies import CausalWan, FlowPolicy
    from policies.conditioning import ControlEncoder
    from policies.image_encoder import CLIPImageEncoder
    from policies.text_encoder import UMT5TextEncoder

    path = _causal_dir(path)
    extra = None if (path / "causal_config.json").exists() else extra_in_channels  # a saved CausalWan has its channels
    model = CausalWan.from_pretrained(path, extra_in_channels=extra, window=window, sink=sink, torch_dtype=getattr(torch, dtype))
    memory_options(model, checkpointing, lora_rank, lora_alpha)
    text = UMT5TextEncoder.from_pretrained(text_encoder_path, tokenizer_path)
    image = CLIPImageEncoder.from_pretrained(image_encoder_path) if image_encoder_path else None
    encoder = ControlEncoder(codec, text, image, mask_channels=4, heatmap_sigma=heatmap_sigma)
    return FlowPolicy(model, encoder, step=step, num_steps=num_steps, shift=shift, compute_dtype=compute_dtype)


@dataclass
class SpritesStudentConf:
    """The bundled Sprites-Drag causal student (CPU world, hash text embeddings)."""

    _target_: str = "examples.ar_drag.components.sprites_student"
    path: str = str(BUNDLE / "student")  # CausalWan directory
    window: int | None = None  # KV window in frames, the current block included, sinks not counted (None: as saved with the model, else 7)
    sink: int | None = None  # first frames kept in every window (None: as saved with the model, else 0)
    text_dim: int = 32  # hash text embedding width the student was trained with
    heatmap_sigma: float = 1.5  # trajectory Gaussian std in pixels
    num_steps: int = 3  # N, denoising steps per frame (as distilled)
    shift: float = 3.0  # timestep shift of the sigmas (as distilled)
    checkpointing: bool = False  # recompute each transformer block's activations in backward (less memory, ~1/3 more compute)
    compute_dtype: str = "float32"  # matmul dtype under autocast (bfloat16: bf16 compute, fp32 weights, SDE step and log-probs)
    lora_rank: int = 0  # LoRA adapters of this rank on attention and FFN projections, base frozen (0: full fine-tuning; needs peft)
    lora_alpha: float | None = None  # LoRA scale numerator (None: lora_rank, i.e. scale 1)


@dataclass
class WanStudentConf:
    """A causal student from a diffusers-format Wan I2V transformer directory."""

    _target_: str = "examples.ar_drag.components.wan_student"
    path: str = MISSING  # Wan transformer dir (36-channel I2V input, or a saved CausalWan)
    text_encoder_path: str = MISSING  # UMT5 encoder dir (with tokenizer, or see tokenizer_path)
    tokenizer_path: str | None = None  # tokenizer dir when separate from the text encoder
    image_encoder_path: str | None = None  # CLIP vision dir (Wan I2V image tokens); None: no image tokens
    extra_in_channels: int = 16  # zero-initialized trajectory channels added to a plain Wan dir
    heatmap_sigma: float = 6.0  # trajectory Gaussian std in pixels
    num_steps: int = 3  # N, denoising steps per frame
    shift: float = 5.0  # timestep shift of the sigmas
    dtype: str = "float32"  # model weights dtype: keep float32 (the optimizer's master weights) and set compute_dtype for bf16
    window: int | None = None  # KV window in frames, the current block included, sinks not counted (None: as saved with the model, else 7)
    sink: int | None = None  # first frames kept in every window (None: as saved with the model, else 0)
    checkpointing: bool = False  # recompute each transformer block's activations in backward (less memory, ~1/3 more compute)
    compute_dtype: str = "float32"  # matmul dtype under autocast (bfloat16: bf16 compute, fp32 weights, SDE step and log-probs)
    lora_rank: int = 0  # LoRA adapters of this rank on attention and FFN projections, base frozen (0: full fine-tuning; needs peft)
    lora_alpha: float | None = None  # LoRA scale numerator (None: lora_rank, i.e. scale 1)


@dataclass
class CPSStepConf:
    """Coefficient-preserving stochastic step: the next noise level is exact however coarse the step."""

    _target_: str = "rldiff.flow.CPSStep"
    eta: float = 0.5  # fresh fraction of the next noise level, in (0, 1]


@dataclass
class EulerMaruyamaStepConf:
    """Flow-GRPO's Euler-Maruyama step of the reverse SDE."""

    _target_: str = "rldiff.flow.EulerMaruyamaStep"
    eta: float = 0.7  # Flow-GRPO's noise level


# ----------------------------------------------------------------------------- codec, controls, tracker
@dataclass
class PixelCodecConf:
    """Exact space-to-depth codec (no weights)."""

    _target_: str = "policies.codecs.PixelCodec"
    factor: int = 4  # spatial factor; C = 3 * factor^2


@dataclass
class WanVAECodecConf:
    """diffusers AutoencoderKLWan from a local dir."""

    _target_: str = "policies.codecs.WanVAECodec.from_pretrained"
    local_dir: str = MISSING  # the Wan VAE directory


@dataclass
class SpritesControlsConf:
    """Sprites-Drag controls (the train split; the held-out split for evaluation)."""

    _target_: str = "rldiff.data.sprites.SpritesDrag"
    image_size: int = 32  # frame size in pixels
    num_frames: int = 8  # pixel frames
    split: str = "train"  # train | heldout


@dataclass
class LucasKanadeConf:
    """OpenCV pyramidal Lucas-Kanade, chained frame to frame (no weights)."""

    _target_: str = "rewards.trackers.LucasKanadeTracker"


@dataclass
class CoTrackerConf:
    """CoTracker3 from a local checkout and weights (user-installed)."""

    _target_: str = "rewards.trackers.CoTrackerTracker"
    checkout_dir: str = MISSING  # local CoTracker checkout
    checkpoint_path: str = MISSING  # local CoTracker3 weights
    device: str = "cpu"  # where the tracker runs


# ----------------------------------------------------------------------------- reward
def trajectory_and_quality(
    tracker, quality, quality_name: str, lam: float, alpha: float, per_point: bool, increments: bool, lost: str,
    lost_weight: float, consistency_weight: float, consistency_radius: int, quality_weight: float, quality_log: bool, quality_floor: float,
):  # fmt: skip
    """``CompositeReward`` of the per-track trajectory hinge (over ``tracker``) and a quality reward named ``quality_name``."""
    from rewards import CompositeReward, IncrementReward, LogReward, TrackConsistencyReward, TrajectoryHingeReward

    trajectory = TrajectoryHingeReward(tracker, lam=lam, alpha=alpha, per_point=per_point, lost=lost)
    parts = {"trajectory": IncrementReward(trajectory) if increments else trajectory}
    if consistency_weight:
        parts["consistency"] = TrackConsistencyReward(lam=consistency_weight, radius=consistency_radius)
    parts[quality_name] = LogReward(quality, floor=quality_floor) if quality_log else quality
    weights = {quality_name: quality_weight}
    if lost_weight:
        weights["trajectory/lost"] = -lost_weight  # the tracker's lost share, same pass
    return CompositeReward(parts, weights)


@dataclass
class SpritesRewardConf:
    """R = lam * mean_k max(0, alpha - ||track_hat - track||^2) + quality_weight * log(Sprites quality).

    With ``increments`` frame t's trajectory term is the hinge's change since frame t-1
    (``rewards.IncrementReward``); the hinge itself is logged as ``trajectory/value``.
    """

    _target_: str = "examples.ar_drag.components.trajectory_and_quality"
    quality: dict = field(default_factory=lambda: {"_target_": "rewards.sprites.SpritesQualityReward"})  # the quality reward
    quality_name: str = "quality"  # its component name in logs and tables
    lam: float = 20.0  # hinge scale
    alpha: float = 0.05  # hinge margin (squared normalized distance)
    per_point: bool = True  # hinge each track separately: lam * mean_k max(0, alpha - e_k)
    increments: bool = True  # score frame t by the hinge's change since frame t-1 (a chained tracker's error accumulates)
    lost: str = "stale"  # a track the tracker lost: stale (scored where last found) | miss (error alpha: favours freezing)
    lost_weight: float = 0.0  # subtracted per frame times the share of tracks lost on it (not incremented; lam * alpha = a full hinge)
    consistency_weight: float = 0.0  # weight of rewards.TrackConsistencyReward (patch error along the target tracks; 0: off)
    consistency_radius: int = 4  # its half patch side in pixels
    quality_weight: float = 0.7  # weight of the quality term (the trajectory term's is 1)
    quality_log: bool = True  # train on log(quality) (sprites: a product of factors, tiny for a few-step student)
    quality_floor: float = 1e-4  # quality_log: values below count as this


@dataclass
class AestheticRewardConf(SpritesRewardConf):
    """R = trajectory hinge + quality_weight * LAION aesthetic (AR-Drag's reward)."""

    quality: dict = field(default_factory=lambda: {"_target_": "rewards.AestheticReward", "clip_path": MISSING, "head_path": MISSING})  # CLIP ViT-L/14 dir and LAION head
    quality_name: str = "aesthetic"  # its component name in logs and tables
    quality_weight: float = 1.0  # AR-Drag adds the aesthetic score to the hinge as it is
    quality_log: bool = False  # the aesthetic score is used as it is


# ----------------------------------------------------------------------------- advantage
@dataclass
class RenormalizedPerTermConf:
    """Each reward term normalized in its group, the weighted sum normalized again."""

    _target_: str = "rldiff.advantages.RenormalizedPerTermAdvantage"
    weights: dict | None = None  # term -> weight (None: the composite reward's own weights)


@dataclass
class PerTermConf:
    """Each reward term normalized in its group, then summed with weights (MixGRPO, DanceGRPO)."""

    _target_: str = "rldiff.advantages.PerTermAdvantage"
    weights: dict | None = None  # term -> weight (None: the composite reward's own weights)


@dataclass
class GroupConf:
    """The total reward normalized in its group (Flow-GRPO)."""

    _target_: str = "rldiff.advantages.GroupAdvantage"


def register(cs: ConfigStore | None = None) -> None:
    """Register the AR-Drag groups: policy, step, codec, controls, tracker, reward, advantage."""
    cs = cs or ConfigStore.instance()
    groups = {
        "policy": {"sprites_student": SpritesStudentConf, "wan": WanStudentConf},
        "step": {"cps": CPSStepConf, "euler_maruyama": EulerMaruyamaStepConf},
        "codec": {"pixel": PixelCodecConf, "wan_vae": WanVAECodecConf},
        "controls": {"sprites": SpritesControlsConf},
        "tracker": {"lucas_kanade": LucasKanadeConf, "cotracker": CoTrackerConf},
        "reward": {"sprites": SpritesRewardConf, "aesthetic": AestheticRewardConf},
        "advantage": {"per_term_renormalized": RenormalizedPerTermConf, "per_term": PerTermConf, "group": GroupConf},
    }
    for group, options in groups.items():
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)
