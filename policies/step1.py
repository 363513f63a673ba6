"""AR-Drag Step 1 training steps: teacher flow matching and DMD + adversarial distillation.

:func:`teacher_loss` fine-tunes the bidirectional teacher; :class:`Distiller`
distills it into the causal few-step student. The generator's history comes
from a :mod:`policies.distill_rollouts` variant (SelfRollout for AR-Drag).
The "real" score is the frozen teacher, the "fake" score a critic (a copy of
the teacher) trained by flow matching on student samples; a small
discriminator head on the critic's mid-layer features adds the adversarial
term (non-saturating softplus losses). The critic updates every iteration,
the generator every ``generator_every``-th; the generator keeps an EMA.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torch import Tensor, nn

from rldiff import distributed as dist_utils
from rldiff.distill import add_noise, discriminator_loss, dmd_loss, flow_matching_loss, generator_adversarial_loss, sample_dmd_sigma, x0_from_velocity
from rldiff.flow import shift_sigma
from rldiff.parallel import ManualAllReduce
from rldiff.types import Control

__all__ = ["WorldBatch", "encode_batch", "teacher_loss", "DiscriminatorHead", "Distiller"]


@dataclass
class WorldBatch:
    """Training clips: clean latents ``x0 [B, F, C, H, W]``, their conditioning and controls."""

    x0: Tensor
    cond: TensorDict
    control: Control


def encode_batch(source, codec, encoder, batch_size: int, generator: torch.Generator | None = None) -> WorldBatch:
    """Draw ``batch_size`` clips from ``source.sample_videos`` and encode video and controls."""
    video, control = source.sample_videos(batch_size, generator)
    with torch.no_grad():
        x0 = codec.encode(video)  # [B, F, C, H, W]
        cond = encoder.encode(control, x0.shape[1], generator=generator)
    return WorldBatch(x0.float(), cond, control)


def teacher_loss(teacher: nn.Module, batch: WorldBatch, generator: torch.Generator | None = None, shift: float = 3.0) -> dict[str, Tensor]:
    """Flow-matching loss of the bidirectional teacher on a batch (one shifted-uniform level per clip)."""
    b = batch.x0.shape[0]
    sigma = shift_sigma(torch.rand(b, generator=generator), shift)  # [B]
    eps = torch.randn(batch.x0.shape, generator=generator)
    v = teacher(add_noise(batch.x0, eps, sigma), sigma, batch.cond)
    return flow_matching_loss(v, batch.x0, eps)


class DiscriminatorHead(nn.Module):
    """Logit from a critic's mid-layer features: a forward hook on ``blocks[layer]``, mean-pooled tokens, an MLP."""

    def __init__(self, critic: nn.Module, layer: int | None = None, hidden: int = 64):
        super().__init__()
        blocks = critic.transformer.blocks
        self.layer = len(blocks) // 2 if layer is None else layer
        if not 0 <= self.layer < len(blocks):
            raise ValueError(f"layer must lie in [0, {len(blocks)}), got {self.layer}")
        dim = critic.transformer.config.num_attention_heads * critic.transformer.config.attention_head_dim
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self._features: Tensor | None = None
        blocks[self.layer].register_forward_hook(self._grab)

    def _grab(self, module, args, output) -> None:
        self._features = output[0] if isinstance(output, tuple) else output

    def forward(self, critic: nn.Module, x: Tensor, sigma: Tensor, cond: TensorDict) -> Tensor:
        """Run the critic on ``x`` and return ``[B]`` logits from the hooked features."""
        critic(x, sigma, cond)
        feats = self._features  # [B, L, D]
        self._features = None
        return self.mlp(feats.float().mean(dim=1)).squeeze(-1)


class Distiller:
    """DMD + adversarial distillation of a bidirectional teacher into a causal student.

    Args:
        student: a causal model with ``new_cache``/``forward_frame``/``commit`` (``policies.CausalWan``).
        teacher: the frozen bidirectional teacher ``teacher(x, sigma, cond) -> v``.
        rollout: a :class:`policies.distill_rollouts.StudentRollout` (SelfRollout, SelfForcing, TeacherForcing).
        sigmas: the student's ``[N+1]`` noise levels.
        lr_generator, lr_critic: AdamW learning rates (betas (0, 0.999) as in Self-Forcing).
        generator_every: generator update period in iterations (critic: every iteration).
        adv_weight: weight of the adversarial generator term (0 disables the head).
        dmd_shift: shift of the DMD noise-level distribution.
        ema_decay: decay of the generator EMA (reached after a warm-up, see :meth:`ema_decay_now`).
        parallel: gradient sync across ranks, :class:`rldiff.parallel.ManualAllReduce` (the
            default and, under torch.distributed, the only choice: DDP and FSDP2 need one forward
            per backward, while the student is driven frame by frame through its methods and
            the critic runs several times per backward). Replicas start from rank 0's weights.
    """

    def __init__(self, student, teacher, rollout, sigmas: Tensor, *, lr_generator: float = 1e-4, lr_critic: float = 2e-4, generator_every: int = 5, adv_weight: float = 0.05, dmd_shift: float = 3.0, ema_decay: float = 0.99, parallel=None):
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        if type(self.parallel) is not ManualAllReduce and dist_utils.is_distributed():
            raise ValueError(f"Distiller: parallel must be rldiff.parallel.ManualAllReduce under torch.distributed (see the class doc), got {type(self.parallel).__name__}")
        self.student, self.teacher, self.rollout, self.sigmas = student, teacher.requires_grad_(False).eval(), rollout, sigmas
        self.critic = copy.deepcopy(teacher).requires_grad_(True).train()
        self.head = DiscriminatorHead(self.critic) if adv_weight > 0 else None
        for module in (student, self.critic, self.head.mlp if self.head else None):
            if module is not None:
                dist_utils.broadcast_module_(module)
        critic_params = list(self.critic.parameters()) + (list(self.head.parameters()) if self.head else [])
        self.opt_generator = torch.optim.AdamW(student.parameters(), lr=lr_generator, betas=(0.0, 0.999))
        self.opt_critic = torch.optim.AdamW(critic_params, lr=lr_critic, betas=(0.0, 0.999))
        self.ema = copy.deepcopy(student).requires_grad_(False)
        self.generator_every, self.adv_weight, self.dmd_shift, self.ema_decay = generator_every, adv_weight, dmd_shift, ema_decay
        self.iteration = 0

    def ema_decay_now(self) -> float:
        """EMA decay of the current generator update, warmed up as ``min(ema_decay, (1 + n) / (10 + n))``.

        ``n`` counts earlier generator updates; without the warm-up a short run's EMA
        would still hold mostly the initial (undistilled) weights (0.99^60 = 0.55).
        """
        n = self.iteration // self.generator_every
        return min(self.ema_decay, (1.0 + n) / (10.0 + n))

    def _noised(self, x: Tensor, generator) -> tuple[Tensor, Tensor]:
        sigma = sample_dmd_sigma(x.shape[0], self.dmd_shift, generator=generator)  # [B]
        return add_noise(x, torch.randn(x.shape, generator=generator), sigma), sigma

    def generator_step(self, batch: WorldBatch, generator) -> tuple[dict[str, float], Tensor]:
        noise = torch.randn(batch.x0.shape, generator=generator)
        out = self.rollout(self.student, batch.cond, noise, self.sigmas, generator, ground_truth=batch.x0)
        x = out.x0  # [B, F, C, H, W], with grad
        xt, sigma = self._noised(x.detach(), generator)
        with torch.no_grad():
            real_x0 = x0_from_velocity(xt, self.teacher(xt, sigma, batch.cond), sigma)
            fake_x0 = x0_from_velocity(xt, self.critic(xt, sigma, batch.cond), sigma)
        losses = dmd_loss(x, real_x0, fake_x0)
        total = losses["loss"]
        metrics = {"loss_dmd": float(losses["loss_dmd"]), "dmd_grad_norm": float(losses["dmd_grad_norm"])}
        if self.head is not None:
            self.critic.requires_grad_(False)
            xt_g = add_noise(x, torch.randn(x.shape, generator=generator), sigma)  # gradient flows to x
            adv = generator_adversarial_loss(self.head(self.critic, xt_g, sigma, batch.cond))
            self.critic.requires_grad_(True)
            total = total + self.adv_weight * adv["loss"]
            metrics["loss_gan_g"] = float(adv["loss_gan_g"])
        self.opt_generator.zero_grad(set_to_none=True)
        total.backward()
        self.parallel.after_backward(list(self.student.parameters()))
        metrics["grad_norm_generator"] = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0))
        self.opt_generator.step()
        self.opt_critic.zero_grad(set_to_none=True)  # the adversarial term must not train the head here
        with torch.no_grad():
            decay = self.ema_decay_now()
            for e, p in zip(self.ema.parameters(), self.student.parameters()):
                e.lerp_(p, 1.0 - decay)
        return metrics, out.x0.detach()

    def critic_step(self, batch: WorldBatch, fake: Tensor, generator) -> dict[str, float]:
        eps = torch.randn(fake.shape, generator=generator)
        sigma = torch.rand(fake.shape[0], generator=generator).clamp(0.02, 0.98)  # [B]
        loss = flow_matching_loss(self.critic(add_noise(fake, eps, sigma), sigma, batch.cond), fake, eps)
        total, metrics = loss["loss"], {"loss_critic": float(loss["loss_flow"])}
        if self.head is not None:
            real_t, s_real = self._noised(batch.x0, generator)
            fake_t, s_fake = self._noised(fake, generator)
            d = discriminator_loss(self.head(self.critic, real_t, s_real, batch.cond), self.head(self.critic, fake_t, s_fake, batch.cond))
            total = total + d["loss"]
            metrics.update(loss_gan_d=float(d["loss_gan_d"]), disc_accuracy=float(d["disc_accuracy"]))
        self.opt_critic.zero_grad(set_to_none=True)
        total.backward()
        self.parallel.after_backward([p for g in self.opt_critic.param_groups for p in g["params"]])
        torch.nn.utils.clip_grad_norm_([p for g in self.opt_critic.param_groups for p in g["params"]], 1.0)
        self.opt_critic.step()
        return metrics

    def step(self, batch: WorldBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """One iteration: a generator update when due, then a critic update on fresh student samples."""
        metrics: dict[str, float] = {}
        if self.iteration % self.generator_every == 0:
            m, fake = self.generator_step(batch, generator)
            metrics.update(m)
        else:
            with torch.no_grad():
                noise = torch.randn(batch.x0.shape, generator=generator)
                fake = self.rollout(self.student, batch.cond, noise, self.sigmas, generator, ground_truth=batch.x0).x0
        metrics.update(self.critic_step(batch, fake, generator))
        self.iteration += 1
        return metrics
