"""AR-Drag Step 1 training steps: teacher flow matching and DMD + adversarial distillation.

:func:`teacher_loss` fine-tunes the bidirectional teacher; :class:`Distiller`
distills it into the causal few-step student. The generator's history comes
from a :mod:`policies.distill_rollouts` variant (SelfRollout for AR-Drag).
The "real" score is the frozen teacher, the "fake" score a critic (a copy of
the teacher) trained by flow matching on student samples; a small
discriminator head on the critic's mid-layer features adds the adversarial
term (non-saturating softplus losses). The critic updates every iteration,
the generator every ``generator_every``-th; the generator keeps an EMA.

Under torch.distributed the student and the critic (with the head) are each
driven through a runner module whose ``forward`` is the whole differentiable
computation of one update (:class:`GeneratorRunner`: the student rollout;
:class:`CriticRunner`: the critic loss), so DDP's and FSDP2's hooks fire once
per backward; their other uses are runner methods (FSDP2 forward methods).
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
from rldiff.parallel import ManualAllReduce, ema_decay_warmup, ema_update_
from rldiff.types import Control

__all__ = ["WorldBatch", "encode_batch", "teacher_loss", "DiscriminatorHead", "GeneratorRunner", "CriticRunner", "Distiller"]


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


def _noised(x: Tensor, shift: float, generator) -> tuple[Tensor, Tensor]:
    sigma = sample_dmd_sigma(x.shape[0], shift, generator=generator)  # [B]
    return add_noise(x, torch.randn(x.shape, generator=generator), sigma), sigma


class GeneratorRunner(nn.Module):
    """The student's rollout as a module: ``forward`` with gradients (one per generator backward), ``sample`` without."""

    def __init__(self, student: nn.Module, rollout, sigmas: Tensor):
        super().__init__()
        self.student, self.rollout, self.sigmas = student, rollout, sigmas

    def forward(self, cond: TensorDict, noise: Tensor, generator: torch.Generator | None = None, ground_truth: Tensor | None = None) -> Tensor:
        """Generator outputs ``x0 [B, F, C, H, W]`` of the student rollout over ``noise``, with gradients."""
        return self.rollout(self.student, cond, noise, self.sigmas, generator, ground_truth=ground_truth).x0

    def sample(self, cond: TensorDict, noise: Tensor, generator: torch.Generator | None = None, ground_truth: Tensor | None = None) -> Tensor:
        """The same rollout without gradients (critic-only iterations)."""
        with torch.no_grad():
            return self.forward(cond, noise, generator, ground_truth)


class CriticRunner(nn.Module):
    """The critic (fake score) and the discriminator head: ``forward`` is the critic-step loss; ``velocity``
    (no grad) and ``adversarial_logits`` (critic frozen) serve the generator step."""

    def __init__(self, critic: nn.Module, head: DiscriminatorHead | None, dmd_shift: float):
        super().__init__()
        self.critic, self.head, self.dmd_shift = critic, head, dmd_shift

    def forward(self, real: Tensor, fake: Tensor, cond: TensorDict, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Flow matching on ``fake [B, F, C, H, W]`` plus the discriminator loss on noised ``real``/``fake``."""
        eps = torch.randn(fake.shape, generator=generator)
        sigma = torch.rand(fake.shape[0], generator=generator).clamp(0.02, 0.98)  # [B]
        flow = flow_matching_loss(self.critic(add_noise(fake, eps, sigma), sigma, cond), fake, eps)
        out = {"loss": flow["loss"], "loss_critic": flow["loss_flow"].detach()}
        if self.head is not None:
            real_t, s_real = _noised(real, self.dmd_shift, generator)
            fake_t, s_fake = _noised(fake, self.dmd_shift, generator)
            d = discriminator_loss(self.head(self.critic, real_t, s_real, cond), self.head(self.critic, fake_t, s_fake, cond))
            out.update(loss=out["loss"] + d["loss"], loss_gan_d=d["loss_gan_d"].detach(), disc_accuracy=d["disc_accuracy"].detach())
        return out

    def velocity(self, x: Tensor, sigma: Tensor, cond: TensorDict) -> Tensor:
        """The fake score's velocity on ``x``, without gradients."""
        with torch.no_grad():
            return self.critic(x, sigma, cond)

    def adversarial_logits(self, x: Tensor, sigma: Tensor, cond: TensorDict) -> Tensor:
        """Head logits ``[B]`` on ``x`` with the critic frozen: gradients reach ``x`` (and the head), not the critic."""
        self.critic.requires_grad_(False)
        try:
            return self.head(self.critic, x, sigma, cond).clone()  # not a view: FSDP2 hooks the output for backward
        finally:
            self.critic.requires_grad_(True)


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
        parallel: gradient sync across ranks (:mod:`rldiff.parallel`: ManualAllReduce, the default,
            DDP or FSDP2). The student and the critic + head are wrapped separately through
            :class:`GeneratorRunner` and :class:`CriticRunner`; the teacher stays replicated. Under
            FSDP2 ``student``, ``critic``, ``head`` and ``ema`` hold sharded DTensors: read them
            through ``parallel.full_state``. Replicas start from rank 0's weights.
        critic_checkpointing: recompute the critic's block activations in backward (less memory).
    """

    def __init__(self, student, teacher, rollout, sigmas: Tensor, *, lr_generator: float = 1e-4, lr_critic: float = 2e-4, generator_every: int = 5, adv_weight: float = 0.05, dmd_shift: float = 3.0, ema_decay: float = 0.99, parallel=None, critic_checkpointing: bool = False):
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        self.student, self.teacher, self.rollout, self.sigmas = student, teacher.requires_grad_(False).eval(), rollout, sigmas
        self.critic = copy.deepcopy(teacher).requires_grad_(True).train()
        if critic_checkpointing:  # per-block activation checkpointing of the critic's passes with gradients
            if not isinstance(getattr(type(self.critic), "checkpointing", None), property):
                raise TypeError(f"critic_checkpointing needs a teacher with a checkpointing switch (policies.teacher.BidirectionalWan), got {type(teacher).__name__}")
            self.critic.checkpointing = True
        self.head = DiscriminatorHead(self.critic) if adv_weight > 0 else None
        for module in (student, self.critic, self.head.mlp if self.head else None):
            if module is not None:
                dist_utils.broadcast_module_(module)
        self.ema = copy.deepcopy(student).requires_grad_(False)
        # the runners (DDP/FSDP2 may replace the parameters: optimizers come after)
        self.generator_runner = self.parallel.wrap_module(GeneratorRunner(student, rollout, sigmas), ("sample",))
        self.critic_runner = self.parallel.wrap_module(CriticRunner(self.critic, self.head, dmd_shift), ("velocity", "adversarial_logits"))
        self.ema = self.parallel.shard_like(self.ema, student)
        critic_params = list(self.critic.parameters()) + (list(self.head.parameters()) if self.head else [])
        self.opt_generator = torch.optim.AdamW(student.parameters(), lr=lr_generator, betas=(0.0, 0.999))
        self.opt_critic = torch.optim.AdamW(critic_params, lr=lr_critic, betas=(0.0, 0.999))
        self.generator_every, self.adv_weight, self.dmd_shift, self.ema_decay = generator_every, adv_weight, dmd_shift, ema_decay
        self.iteration = 0

    def ema_decay_now(self) -> float:
        """EMA decay of the current generator update, warmed up as ``min(ema_decay, (1 + n) / (10 + n))``.

        ``n`` counts earlier generator updates; without the warm-up a short run's EMA
        would still hold mostly the initial (undistilled) weights (0.99^60 = 0.55).
        """
        return ema_decay_warmup(self.ema_decay, self.iteration // self.generator_every)

    def generator_step(self, batch: WorldBatch, generator) -> tuple[dict[str, float], Tensor]:
        noise = torch.randn(batch.x0.shape, generator=generator)
        x = self.generator_runner(batch.cond, noise, generator, batch.x0)  # [B, F, C, H, W], with grad
        xt, sigma = _noised(x.detach(), self.dmd_shift, generator)
        critic = self.parallel.runner_module(self.critic_runner)
        with torch.no_grad():
            real_x0 = x0_from_velocity(xt, self.teacher(xt, sigma, batch.cond), sigma)
            fake_x0 = x0_from_velocity(xt, critic.velocity(xt, sigma, batch.cond), sigma)
        losses = dmd_loss(x, real_x0, fake_x0)
        total = losses["loss"]
        metrics = {"loss_dmd": float(losses["loss_dmd"]), "dmd_grad_norm": float(losses["dmd_grad_norm"])}
        if self.head is not None:
            xt_g = add_noise(x, torch.randn(x.shape, generator=generator), sigma)  # gradient flows to x
            adv = generator_adversarial_loss(critic.adversarial_logits(xt_g, sigma, batch.cond))
            total = total + self.adv_weight * adv["loss"]
            metrics["loss_gan_g"] = float(adv["loss_gan_g"])
        self.opt_generator.zero_grad(set_to_none=True)
        total.backward()
        params = list(self.student.parameters())
        self.parallel.after_backward(params)
        metrics["grad_norm_generator"] = float(self.parallel.clip_grad_norm(params, 1.0))
        self.opt_generator.step()
        self.opt_critic.zero_grad(set_to_none=True)  # the adversarial term must not train the head here
        ema_update_(self.ema, self.student, self.ema_decay_now())
        return metrics, x.detach()

    def critic_step(self, batch: WorldBatch, fake: Tensor, generator) -> dict[str, float]:
        losses = self.critic_runner(batch.x0, fake, batch.cond, generator)
        params = [p for g in self.opt_critic.param_groups for p in g["params"]]
        self.opt_critic.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.parallel.after_backward(params)
        self.parallel.clip_grad_norm(params, 1.0)
        self.opt_critic.step()
        return {k: float(v) for k, v in losses.items() if k != "loss"}

    def step(self, batch: WorldBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """One iteration: a generator update when due, then a critic update on fresh student samples."""
        metrics: dict[str, float] = {}
        if self.iteration % self.generator_every == 0:
            m, fake = self.generator_step(batch, generator)
            metrics.update(m)
        else:
            noise = torch.randn(batch.x0.shape, generator=generator)
            fake = self.parallel.runner_module(self.generator_runner).sample(batch.cond, noise, generator, batch.x0)
        metrics.update(self.critic_step(batch, fake, generator))
        self.iteration += 1
        return metrics
