"""A tiny 2-D flow-matching world: proof that the GRPO core is generic (no video, no env).

Data: a mixture of ``num_modes`` Gaussians on a circle. The "video" has one
frame (F = 1) holding one 2-D point; the flow model is an MLP on (x, sigma).
:class:`ToyPolicy` satisfies :class:`rldiff.protocols.RolloutPolicy` and
:class:`ToyCollector` satisfies :class:`rldiff.protocols.Collector`, so the
generic :class:`rldiff.trainer.GRPOTrainer` trains it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torch import Tensor, nn

from rldiff.flow import flow_grpo_diffusion, gaussian_log_prob, ode_step, sde_step, shifted_sigmas
from rldiff.rollout import RolloutRecorder

__all__ = ["NoControl", "NoControlSource", "ToyFlowModel", "ToyPolicy", "ToyCollector", "mixture_sample", "mode_reward", "pretrain"]


@dataclass
class NoControl:
    """An unconditional batch of ``size`` controls (the toy has nothing to condition on)."""

    size: int

    def __len__(self) -> int:
        return self.size

    def index(self, idx: Tensor) -> "NoControl":
        return NoControl(len(idx))

    def repeat_interleave(self, repeats: int) -> "NoControl":
        return NoControl(self.size * repeats)


class NoControlSource:
    """Control source of the unconditional toy."""

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> NoControl:
        return NoControl(batch_size)


def mixture_centers(num_modes: int = 8, radius: float = 3.0) -> Tensor:
    angle = torch.arange(num_modes, dtype=torch.float32) * (2 * math.pi / num_modes)  # [M]
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)  # [M, 2]


def mixture_sample(n: int, generator: torch.Generator | None = None, num_modes: int = 8, radius: float = 3.0, spread: float = 0.25) -> Tensor:
    """``[n, 2]`` points from the mixture of Gaussians on a circle."""
    centers = mixture_centers(num_modes, radius)
    which = torch.randint(0, num_modes, (n,), generator=generator)  # [n]
    return centers[which] + spread * torch.randn(n, 2, generator=generator)


def mode_reward(x: Tensor, target: tuple[float, float] = (3.0, 0.0), width: float = 1.0) -> Tensor:
    """``exp(-||x - target||^2 / (2 width^2))``: prefers the mode at ``target``. ``[R, 2] -> [R]``."""
    d2 = ((x - torch.tensor(target, dtype=x.dtype, device=x.device)) ** 2).sum(dim=-1)  # [R]
    return torch.exp(-d2 / (2 * width**2))


class ToyFlowModel(nn.Module):
    """MLP velocity model ``v(x, sigma)`` for 2-D points."""

    def __init__(self, hidden: int = 128, num_freqs: int = 8):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(100.0), num_freqs)), persistent=False)
        self.net = nn.Sequential(
            nn.Linear(2 + 2 * num_freqs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """``x [R, 2]``, ``sigma [R]`` -> ``v [R, 2]``."""
        phase = sigma.float().unsqueeze(-1) * self.freqs  # [R, num_freqs]
        return self.net(torch.cat([x, phase.sin(), phase.cos()], dim=-1))


def pretrain(model: ToyFlowModel, steps: int = 2000, batch_size: int = 512, lr: float = 2e-3, generator: torch.Generator | None = None) -> float:
    """Flow-matching pre-training on the mixture; returns the final loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x0 = mixture_sample(batch_size, generator)  # [b, 2]
        eps = torch.randn(x0.shape, generator=generator)  # [b, 2]
        sigma = torch.rand(batch_size, generator=generator)  # [b]
        xt = (1 - sigma[:, None]) * x0 + sigma[:, None] * eps
        loss = ((model(xt, sigma) - (eps - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


class ToyPolicy(nn.Module):
    """The RL policy around a :class:`ToyFlowModel`: SDE steps with Flow-GRPO's diffusion ``eta``."""

    def __init__(self, model: ToyFlowModel, eta: float = 0.7, sigma_cap: float = 0.99):
        super().__init__()
        if eta <= 0:
            raise ValueError(f"eta must be > 0 for stochastic steps, got {eta}")
        self.model, self.eta, self.sigma_cap = model, eta, sigma_cap

    def diffusion(self, sigma: Tensor) -> Tensor:
        return flow_grpo_diffusion(sigma, self.eta, self.sigma_cap)

    def mean(self, x: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        """SDE mean of one step for ``x [R, 2]`` and per-row levels ``[R]``."""
        v = self.model(x, sigma)
        _, mean, _ = sde_step(x, v, sigma[:, None], sigma_next[:, None], self.diffusion(sigma)[:, None], noise=torch.zeros_like(x))
        return mean

    def recompute(self, rollout: TensorDict, control: NoControl) -> Tensor:
        """SDE means of the recorded stochastic steps, ``[R, S, 2]``, with gradients."""
        steps = rollout["steps"]
        r, s = steps.batch_size
        mean = self.mean(steps["latent"].reshape(r * s, 2), steps["sigma"].reshape(-1), steps["sigma_next"].reshape(-1))
        return mean.reshape(r, s, 2)


class ToyCollector:
    """Samples ``R = B * G`` points with ``num_steps`` Euler steps, SDE where the mask says so."""

    num_frames = 1

    def __init__(self, num_steps: int = 8, shift: float = 1.0, target: tuple[float, float] = (3.0, 0.0)):
        self.num_steps, self.target = num_steps, target
        self.sigmas = shifted_sigmas(num_steps, shift)  # [N+1]

    def collect(self, policy: ToyPolicy, control: NoControl, group_size: int, mask: Tensor, generator=None) -> TensorDict:
        if tuple(mask.shape) != (1, self.num_steps):
            raise ValueError(f"mask must be [F=1, N={self.num_steps}], got {tuple(mask.shape)}")
        b = len(control)
        r = b * group_size
        rows = torch.arange(r)
        recorder = RolloutRecorder(group=rows // group_size, control_index=rows // group_size)
        x = torch.randn(r, 2, generator=generator)  # [R, 2]
        for n in range(self.num_steps):
            sigma = self.sigmas[n].expand(r)
            sigma_next = self.sigmas[n + 1].expand(r)
            if bool(mask[0, n]):
                mean = policy.mean(x, sigma, sigma_next)  # [R, 2]
                std = policy.diffusion(sigma) * torch.sqrt(sigma - sigma_next)  # [R]
                x_next = mean + std[:, None] * torch.randn(x.shape, generator=generator)
                logp = gaussian_log_prob(x_next, mean, std)  # [R]
                recorder.record_step(0, n, sigma, sigma_next, x, x_next, mean, std, logp)
            else:
                x_next = ode_step(x, policy.model(x, sigma), sigma[:, None], sigma_next[:, None])
            x = x_next
        recorder.record_frame(x, mode_reward(x, self.target))
        return recorder.build()
