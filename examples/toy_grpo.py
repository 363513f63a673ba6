"""GRPO on a 2-D flow-matching toy: the generic core, no video.

A small MLP flow model is pre-trained in seconds on a mixture of 8 Gaussians on
a circle, then fine-tuned with GRPO towards a reward that prefers one mode.
The same trainer, schedules and loss drive the AR-Drag video job.

Launch:
    python examples/toy_grpo.py                                # defaults (OneStepPerFrame)
    python examples/toy_grpo.py schedule=all_steps iterations=40
    python examples/toy_grpo.py -m schedule=one_step_per_frame,all_steps
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING
from examples.common import configs
from examples.common.loop import drive
from examples.common.settings import check_finite, pin_settings
from rldiff.checkpoint import load_tensors, save_json, save_tensors
from rldiff.toy import NoControlSource, ToyCollector, ToyFlowModel, ToyPolicy, pretrain
from rldiff.trainer import GRPOTrainer


@dataclass
class ToyGRPOConfig:
    """Toy GRPO run. Every field is a Hydra override (``name=value``)."""

    defaults: list[Any] = field(default_factory=lambda: [{"schedule": "one_step_per_frame"}, "_self_"])
    schedule: Any = MISSING  # stochasticity schedule (config group)
    seed: int = 0  # seeds pre-training, controls, masks and noise
    pretrain_steps: int = 1500  # flow-matching steps before RL
    num_steps: int = 8  # N, Euler steps per sample
    eta: float = 0.7  # Flow-GRPO diffusion level of SDE steps
    iterations: int = 40  # GRPO iterations
    num_controls: int = 16  # B (the toy is unconditional: B groups)
    group_size: int = 16  # G, samples per group
    lr: float = 3e-4  # AdamW learning rate
    clip_range: float = 0.05  # PPO clip epsilon
    kl_coef: float = 0.0  # KL weight to the pre-trained reference
    epochs: int = 2  # passes over each batch
    minibatch_size: int = 64  # samples per optimizer step
    eval_samples: int = 4096  # ODE samples for the before/after reward
    target: tuple[float, float] = (3.0, 0.0)  # the preferred mode
    tensorboard: bool = True  # also write TensorBoard scalars


cs = ConfigStore.instance()
cs.store(name="toy_grpo", node=ToyGRPOConfig)
configs.register(cs)


def evaluate(policy: ToyPolicy, collector: ToyCollector, num: int, seed: int) -> float:
    """Mean reward of ``num`` deterministic (ODE) samples."""
    mask = torch.zeros(1, collector.num_steps, dtype=torch.bool)  # [F, N]
    with torch.no_grad():
        rollout = collector.collect(policy, NoControlSource().sample(num), 1, mask, torch.Generator().manual_seed(seed))
    return float(rollout["reward"].mean())


def main(cfg: ToyGRPOConfig) -> dict[str, float]:
    out = Path(HydraConfig.get().runtime.output_dir)
    check_finite(cfg)
    pin_settings(out, cfg, ("iterations", "eval_samples", "tensorboard"))  # a resume with other settings is refused, not mixed in
    torch.manual_seed(cfg.seed)

    # Build the policy (pre-trained once per run directory, reused on resume)
    model = ToyFlowModel()
    pretrained = out / "pretrained.safetensors"
    if pretrained.exists():
        model.load_state_dict(load_tensors(pretrained))
    else:
        loss = pretrain(model, steps=cfg.pretrain_steps, generator=torch.Generator().manual_seed(cfg.seed))
        print(f"pre-trained flow model: final flow-matching loss {loss:.3f}")
        save_tensors(pretrained, model.state_dict())
    policy = ToyPolicy(model, eta=cfg.eta)
    collector = ToyCollector(num_steps=cfg.num_steps, target=tuple(cfg.target))
    reference_policy = ToyPolicy(ToyFlowModel(), eta=cfg.eta)
    reference_policy.model.load_state_dict(load_tensors(pretrained))
    before = evaluate(reference_policy, collector, cfg.eval_samples, cfg.seed + 1)

    trainer = GRPOTrainer(
        policy,
        collector,
        NoControlSource(),
        instantiate(cfg.schedule),
        lr=cfg.lr,
        num_controls=cfg.num_controls,
        group_size=cfg.group_size,
        clip_range=cfg.clip_range,
        kl_coef=cfg.kl_coef,
        epochs=cfg.epochs,
        minibatch_size=cfg.minibatch_size,
        seed=cfg.seed,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=5,
        reference=reference_policy if cfg.kl_coef > 0 else None,
    )

    # Collect and update
    drive(trainer, cfg.iterations, out, desc="toy GRPO", tensorboard=cfg.tensorboard)
    if trainer.iteration % trainer.checkpoint_every:
        trainer.save_checkpoint()

    # Evaluate
    after = evaluate(policy, collector, cfg.eval_samples, cfg.seed + 1)
    summary = {"reward_before": before, "reward_after": after, "iterations": trainer.iteration}
    save_json(out / "summary.json", summary, sort_keys=False)
    print(f"mean ODE reward over {cfg.eval_samples} samples: before RL {before:.4f} -> after RL {after:.4f}")
    return summary


@hydra.main(version_base=None, config_name="toy_grpo")
def _entry(cfg: ToyGRPOConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    _entry()
