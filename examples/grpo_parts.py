"""Config groups of ``ar_drag_grpo.py`` and the builders that turn them into objects.

Groups (one structured config per option, so a typo in an override is a Hydra error):
  policy:   sprites_student (the bundled Sprites-Drag student) | wan (a diffusers Wan I2V dir)
  codec:    pixel | wan_vae
  controls: sprites (Sprites-Drag train split; held-out split for evaluation)
  reward:   sprites (trajectory hinge + Sprites quality) | aesthetic (trajectory hinge + LAION aesthetic)
  schedule: one_step_per_frame | all_steps | sliding_window | no_steps
  grpo:     the GRPOTrainer settings
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from common import register_schedules

BUNDLE = Path(__file__).resolve().parent / "pretrained" / "sprites_drag"


# ----------------------------------------------------------------------------- policy
@dataclass
class FlowPolicyConf:
    """What every policy config shares: the KV window and the stochastic step of ``FlowPolicy``."""

    window: int = 7  # KV window in frames (current one included)
    sink: int | None = None  # first frames kept in every window (None: as saved with the model)
    sde: str = "cps"  # stochastic step: cps (coefficient-preserving) | flow_grpo (Euler-Maruyama: excess noise at 3 steps)
    eta: float = 0.5  # noise scale: fresh noise fraction in (0, 1] (cps) or Flow-GRPO's eta (flow_grpo)
    sigma_cap: float = 0.99  # sigma cap inside the diffusion coefficient (flow_grpo)
    num_steps: int = 3  # N, denoising steps per frame


@dataclass
class SpritesStudentConf(FlowPolicyConf):
    """The bundled Sprites-Drag causal student (CPU world, hash text embeddings)."""

    kind: str = "sprites_student"  # which builder (do not override)
    path: str = str(BUNDLE / "student")  # CausalWan directory
    text_dim: int = 32  # hash text embedding width the student was trained with
    heatmap_sigma: float = 1.5  # trajectory Gaussian std in pixels
    shift: float = 3.0  # timestep shift of the sigmas (must match distillation)


@dataclass
class WanPolicyConf(FlowPolicyConf):
    """A causal student from a diffusers-format Wan I2V transformer directory."""

    kind: str = "wan"  # which builder (do not override)
    path: str = MISSING  # Wan transformer dir (36-channel I2V input, or a saved CausalWan)
    text_encoder_path: str = MISSING  # UMT5 encoder dir (with tokenizer, or see tokenizer_path)
    tokenizer_path: str | None = None  # tokenizer dir when separate from the text encoder
    image_encoder_path: str | None = None  # CLIP vision dir (Wan I2V image tokens); None: no image tokens
    extra_in_channels: int = 16  # zero-initialized trajectory channels added to a plain Wan dir
    heatmap_sigma: float = 6.0  # trajectory Gaussian std in pixels
    shift: float = 5.0  # timestep shift of the sigmas
    dtype: str = "float32"  # model weights dtype (bfloat16 on GPU)


# ----------------------------------------------------------------------------- codec
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


# ----------------------------------------------------------------------------- controls
@dataclass
class SpritesControlsConf:
    """Sprites-Drag controls (train split)."""

    _target_: str = "rldiff.data.sprites.SpritesDrag"
    image_size: int = 32  # frame size in pixels
    num_frames: int = 8  # pixel frames
    split: str = "train"  # train | heldout


# ----------------------------------------------------------------------------- reward
@dataclass
class SpritesRewardConf:
    """R = lam * mean_k max(0, alpha - ||track_hat - track||^2) + quality_weight * log(Sprites quality).

    With ``increments`` (default) frame t's trajectory term is the hinge's change since frame t-1
    (``rewards.IncrementReward``); the hinge itself is logged as ``trajectory/value``.
    """

    kind: str = "sprites"  # which builder (do not override)
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
    tracker: str = "lucas_kanade"  # lucas_kanade | cotracker
    cotracker_checkout: str | None = None  # local CoTracker checkout (tracker=cotracker)
    cotracker_checkpoint: str | None = None  # local CoTracker3 weights (tracker=cotracker)


@dataclass
class AestheticRewardConf(SpritesRewardConf):
    """R = trajectory hinge + quality_weight * LAION aesthetic (AR-Drag's reward)."""

    kind: str = "aesthetic"  # which builder (do not override)
    quality_weight: float = 1.0  # weight of the aesthetic term (AR-Drag adds it to the hinge as it is)
    quality_log: bool = False  # the aesthetic score is used as it is
    clip_path: str = MISSING  # CLIP ViT-L/14 dir (CLIPVisionModelWithProjection)
    head_path: str = MISSING  # LAION improved-aesthetic head (.pth or .safetensors)


# ----------------------------------------------------------------------------- grpo
@dataclass
class GRPOConf:
    """GRPOTrainer settings (see rldiff.trainer.GRPOTrainer)."""

    lr: float = 2e-4  # AdamW learning rate at the start (Sprites-Drag student; AR-Drag used 1e-5 on Wan 1.3B)
    anneal_lr: bool = True  # lr falls linearly to 0 at trainer.iterations (PPO's annealing; false: constant)
    num_controls: int = 4  # B, controls per iteration
    group_size: int = 8  # G, rollouts per control
    shared_noise: bool = True  # a group's rollouts share the initial noise, so they differ only in the SDE steps (EnvCollector)
    gamma: float = 0.0  # reward-to-go discount over frames
    advantage: str = "per_term"  # per_term: normalize each reward term in its group, then sum with its weight | total: normalize the summed reward
    clip_range: float = 2e-3  # PPO clip epsilon
    adv_clip: float = 5.0  # advantage clamp
    kl_coef: float = 0.01  # KL weight to the frozen reference (0 lets the tracks drift; 0.1 holds the policy back)
    epochs: int = 1  # passes over each batch
    minibatch_size: int | None = 16  # rollouts per optimizer step (None: all)
    max_grad_norm: float = 1.0  # gradient-norm clip
    max_nonfinite_fraction: float = 0.25  # stop when more groups than this are non-finite


def register_groups(cs: ConfigStore) -> None:
    cs.store(group="policy", name="sprites_student", node=SpritesStudentConf)
    cs.store(group="policy", name="wan", node=WanPolicyConf)
    cs.store(group="codec", name="pixel", node=PixelCodecConf)
    cs.store(group="codec", name="wan_vae", node=WanVAECodecConf)
    cs.store(group="controls", name="sprites", node=SpritesControlsConf)
    cs.store(group="reward", name="sprites", node=SpritesRewardConf)
    cs.store(group="reward", name="aesthetic", node=AestheticRewardConf)
    cs.store(group="grpo", name="default", node=GRPOConf)
    register_schedules(cs)


# ----------------------------------------------------------------------------- builders
def build_tracker(cfg):
    from rewards.trackers import CoTrackerTracker, LucasKanadeTracker

    if cfg.tracker == "lucas_kanade":
        return LucasKanadeTracker()
    if cfg.tracker == "cotracker":
        return CoTrackerTracker(cfg.cotracker_checkout, cfg.cotracker_checkpoint)
    raise ValueError(f"reward.tracker must be 'lucas_kanade' or 'cotracker', got {cfg.tracker!r}")


def build_reward(cfg):
    """The composite reward of the ``reward`` group."""
    from rewards import AestheticReward, CompositeReward, IncrementReward, LogReward, TrackConsistencyReward, TrajectoryHingeReward

    trajectory = TrajectoryHingeReward(build_tracker(cfg), lam=cfg.lam, alpha=cfg.alpha, per_point=cfg.per_point, lost=cfg.lost)
    if cfg.increments:
        trajectory = IncrementReward(trajectory)
    lost = {"trajectory/lost": -cfg.lost_weight} if cfg.lost_weight else {}  # the tracker's lost share, same pass
    motion = {"trajectory": trajectory}
    if cfg.consistency_weight:
        motion["consistency"] = TrackConsistencyReward(lam=cfg.consistency_weight, radius=cfg.consistency_radius)
    if cfg.kind == "sprites":
        from rewards.sprites import SpritesQualityReward

        quality = SpritesQualityReward()
        if cfg.quality_log:
            quality = LogReward(quality, floor=cfg.quality_floor)
        return CompositeReward({**motion, "quality": quality}, {"quality": cfg.quality_weight, **lost})
    aesthetic = AestheticReward(cfg.clip_path, cfg.head_path)
    if cfg.quality_log:
        raise ValueError("reward.quality_log: the LAION aesthetic score is not a positive product; use quality_log=false with reward=aesthetic")
    return CompositeReward({**motion, "aesthetic": aesthetic}, {"aesthetic": cfg.quality_weight, **lost})


def term_weights(advantage: str, reward) -> dict[str, float] | None:
    """``GRPOTrainer``'s ``term_weights`` for ``grpo.advantage``: None (total) or the composite reward's weights (per_term)."""
    if advantage == "total":
        return None
    if advantage == "per_term":
        return {**reward.weights, **reward.sub_weights}
    raise ValueError(f"grpo.advantage must be 'total' or 'per_term', got {advantage!r}")


def build_policy(cfg, codec):
    """``FlowPolicy`` around a ``CausalWan`` with the matching control encoder."""
    import torch

    from policies import CausalWan, FlowPolicy
    from policies.conditioning import ControlEncoder

    path = Path(cfg.path)
    if not (path / "config.json").is_file():
        hint = " (the bundled student: run examples/ar_drag_distill.py with export_dir, see README)" if cfg.kind == "sprites_student" else ""
        raise FileNotFoundError(f"policy.path: no Wan/CausalWan directory at {path} (expected config.json){hint}")
    if cfg.kind == "sprites_student":
        from policies.text_encoder import HashTextEncoder

        model = CausalWan.from_pretrained(path, window=cfg.window, sink=cfg.sink)
        encoder = ControlEncoder(codec, HashTextEncoder(dim=cfg.text_dim), mask_channels=4, heatmap_sigma=cfg.heatmap_sigma)
    else:
        from policies.image_encoder import CLIPImageEncoder
        from policies.text_encoder import UMT5TextEncoder

        dtype = getattr(torch, cfg.dtype)
        extra = None if (path / "causal_config.json").exists() else cfg.extra_in_channels
        model = CausalWan.from_pretrained(path, extra_in_channels=extra, window=cfg.window, sink=cfg.sink, torch_dtype=dtype)
        text = UMT5TextEncoder.from_pretrained(cfg.text_encoder_path, cfg.tokenizer_path)
        image = CLIPImageEncoder.from_pretrained(cfg.image_encoder_path) if cfg.image_encoder_path else None
        encoder = ControlEncoder(codec, text, image, mask_channels=4, heatmap_sigma=cfg.heatmap_sigma)
    from rldiff import CPSStep, EulerMaruyamaStep

    return FlowPolicy(model, encoder, step=CPSStep(cfg.eta) if cfg.sde == "cps" else EulerMaruyamaStep(cfg.eta))
