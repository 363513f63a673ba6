"""How the causal student builds its own history during distillation: one class per variant.

All three run the student frame by frame through its KV cache. For every
frame ``m`` an exit step ``n_m`` is drawn uniformly; steps before it run
without gradients, and at the exit step the clean prediction
``x0_hat = x_{m,n} - sigma_n * v`` is produced WITH gradients: that is the
frame's generator output for the distillation loss. The variants differ only
in what is written to the cache as frame ``m``'s history:

- :class:`SelfRollout` (AR-Drag): keep denoising step by step to ``x_{m,N}``,
  exactly as inference does, and commit that. The process stays Markov.
- :class:`SelfForcing`: commit the exit-step prediction ``x0_hat`` (a jump).
- :class:`TeacherForcing`: commit the ground-truth clean frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff.flow import ode_step

__all__ = ["StudentRollout", "SelfRollout", "SelfForcing", "TeacherForcing", "RolloutOutput"]


@dataclass
class RolloutOutput:
    """``x0 [B, F, C, H, W]`` generator outputs (with gradients when enabled), ``history [B, F, C, H, W]``
    the committed frames (detached), ``exit_steps [F]`` the exit step of each frame."""

    x0: Tensor
    history: Tensor
    exit_steps: Tensor


class StudentRollout:
    """Base: the frame loop. Subclasses choose the committed history frame in :meth:`history_frame`."""

    needs_ground_truth = False

    def __call__(
        self,
        model,
        cond: TensorDict,
        noise: Tensor,
        sigmas: Tensor,
        generator: torch.Generator | None = None,
        ground_truth: Tensor | None = None,
    ) -> RolloutOutput:
        """Run the student over ``noise [B, F, C, H, W]`` with noise levels ``sigmas [N+1]`` (1 -> 0)."""
        if noise.dim() != 5:
            raise ValueError(f"noise must be [B, F, C, H, W], got {tuple(noise.shape)}")
        if self.needs_ground_truth and (ground_truth is None or ground_truth.shape != noise.shape):
            got = None if ground_truth is None else tuple(ground_truth.shape)
            raise ValueError(f"{type(self).__name__} needs ground_truth with noise's shape {tuple(noise.shape)}, got {got}")
        num_frames, num_steps = noise.shape[1], len(sigmas) - 1
        exits = torch.randint(0, num_steps, (num_frames,), generator=generator)  # [F]
        cache = model.new_cache(cond)
        outputs, history = [], []
        for m in range(num_frames):
            n_exit = int(exits[m])
            x = noise[:, m]  # [B, C, H, W]
            with torch.no_grad():
                for n in range(n_exit):
                    v = model.forward_frame(x, m, 1000.0 * float(sigmas[n]), cond, cache)
                    x = ode_step(x, v, float(sigmas[n]), float(sigmas[n + 1]))
            v = model.forward_frame(x, m, 1000.0 * float(sigmas[n_exit]), cond, cache)
            x0 = x.float() - float(sigmas[n_exit]) * v.float()  # [B, C, H, W], with grad
            outputs.append(x0)
            with torch.no_grad():
                clean = self.history_frame(model, cond, cache, m, n_exit, x, v.detach(), x0.detach(), sigmas, ground_truth)
                model.commit(clean, m, cond, cache)
            history.append(clean)
        return RolloutOutput(torch.stack(outputs, 1), torch.stack(history, 1), exits)

    def history_frame(self, model, cond, cache, m, n_exit, x, v, x0, sigmas, ground_truth) -> Tensor:
        raise NotImplementedError


class SelfRollout(StudentRollout):
    """AR-Drag: finish the frame with the ordinary ODE steps and commit ``x_{m,N}``."""

    def history_frame(self, model, cond, cache, m, n_exit, x, v, x0, sigmas, ground_truth) -> Tensor:
        x = ode_step(x, v, float(sigmas[n_exit]), float(sigmas[n_exit + 1]))
        for n in range(n_exit + 1, len(sigmas) - 1):
            v = model.forward_frame(x, m, 1000.0 * float(sigmas[n]), cond, cache)
            x = ode_step(x, v, float(sigmas[n]), float(sigmas[n + 1]))
        return x


class SelfForcing(StudentRollout):
    """Self-Forcing: commit the exit step's clean prediction (jump straight to a clean frame)."""

    def history_frame(self, model, cond, cache, m, n_exit, x, v, x0, sigmas, ground_truth) -> Tensor:
        return x0


class TeacherForcing(StudentRollout):
    """Teacher forcing: commit the ground-truth clean frame (history never comes from the student)."""

    needs_ground_truth = True

    def history_frame(self, model, cond, cache, m, n_exit, x, v, x0, sigmas, ground_truth) -> Tensor:
        return ground_truth[:, m].float()
