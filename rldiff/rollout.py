"""The rollout TensorDict: exactly what GRPO needs from a batch of episodes.

Batch ``[R]`` with ``R = B * G`` rollouts in ``[B, G]`` order. ``S`` is the
number of stochastic steps per rollout (the stochasticity mask is shared by
all rollouts of one collection). Latent shapes ``...`` are ``C, H, W`` for
video (any trailing shape works for other models).

====================================  =============  =========================================
key                                   shape          meaning
====================================  =============  =========================================
``group``                             [R] long       group id: rollouts sharing a control
``control_index``                     [R] long       row of the collection's ``Control`` batch
``reward``                            [R, F]         total reward of each frame
``("reward_terms", name)``            [R, F]         named reward components
``clean``                             [R, F, ...]    finished clean latents ``x_{m,N}``
``("steps", "frame")``                [R, S] long    frame ``m`` of the stochastic step
``("steps", "step")``                 [R, S] long    step ``n`` (from ``sigma_n`` to ``sigma_{n+1}``)
``("steps", "sigma")``                [R, S]         ``sigma_n``
``("steps", "sigma_next")``           [R, S]         ``sigma_{n+1}``
``("steps", "latent")``               [R, S, ...]    the input latent ``x_{m,n}``
``("steps", "action")``               [R, S, ...]    the sampled next latent ``x_{m,n+1}``
``("steps", "mean")``                 [R, S, ...]    the Gaussian mean when acting
``("steps", "std")``                  [R, S]         the Gaussian std (noise level of the action)
``("steps", "log_prob")``             [R, S]         log-prob of the action when acting
====================================  =============  =========================================
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import Tensor

__all__ = ["STEP_KEYS", "RolloutRecorder", "step_advantages"]

STEP_KEYS = ("frame", "step", "sigma", "sigma_next", "latent", "action", "mean", "std", "log_prob")


class RolloutRecorder:
    """Collects stochastic steps and finished frames of ``R`` rollouts and builds the TensorDict.

    Collectors call :meth:`record_step` on each stochastic step (in time order)
    and :meth:`record_frame` when a frame completes, then :meth:`build`.
    """

    def __init__(self, group: Tensor, control_index: Tensor):
        if group.dim() != 1 or group.shape != control_index.shape:
            raise ValueError(
                f"group and control_index must both be [R], got {tuple(group.shape)} and {tuple(control_index.shape)}"
            )
        self.group = group.long()
        self.control_index = control_index.long()
        self._steps: dict[str, list[Tensor]] = {k: [] for k in STEP_KEYS}
        self._clean: list[Tensor] = []
        self._reward: list[Tensor] = []
        self._terms: dict[str, list[Tensor]] = {}

    @property
    def num_rollouts(self) -> int:
        return self.group.shape[0]

    def record_step(
        self,
        frame: int,
        step: int,
        sigma: float | Tensor,
        sigma_next: float | Tensor,
        latent: Tensor,
        action: Tensor,
        mean: Tensor,
        std: Tensor | float,
        log_prob: Tensor,
    ) -> None:
        """One stochastic step of all ``R`` rollouts: latents ``[R, ...]``, ``std``/``log_prob`` ``[R]`` or scalar."""
        r = self.num_rollouts
        if latent.shape[0] != r or action.shape != latent.shape or mean.shape != latent.shape:
            raise ValueError(
                f"record_step: latent, action and mean must share shape [R={r}, ...], got "
                f"{tuple(latent.shape)}, {tuple(action.shape)}, {tuple(mean.shape)}"
            )

        def per_row(value, dtype=torch.float32) -> Tensor:
            t = torch.as_tensor(value, dtype=dtype, device=latent.device)
            return t.expand(r).clone() if t.dim() == 0 else t.reshape(r).to(dtype)

        self._steps["frame"].append(per_row(frame, torch.long))
        self._steps["step"].append(per_row(step, torch.long))
        self._steps["sigma"].append(per_row(sigma))
        self._steps["sigma_next"].append(per_row(sigma_next))
        self._steps["latent"].append(latent.detach())
        self._steps["action"].append(action.detach())
        self._steps["mean"].append(mean.detach())
        self._steps["std"].append(per_row(std))
        self._steps["log_prob"].append(per_row(log_prob.detach()))

    def record_frame(self, clean: Tensor, reward: Tensor, terms: dict[str, Tensor] | None = None) -> None:
        """A finished frame: clean latent ``[R, ...]``, total reward ``[R]``, components ``{name: [R]}``."""
        r = self.num_rollouts
        if clean.shape[0] != r or reward.shape != (r,):
            raise ValueError(f"record_frame: clean must be [R={r}, ...] and reward [R], got {tuple(clean.shape)}, {tuple(reward.shape)}")
        self._clean.append(clean.detach())
        self._reward.append(reward.detach().float())
        for name, value in (terms or {}).items():
            self._terms.setdefault(name, []).append(value.detach().float().reshape(r))

    def build(self) -> TensorDict:
        r = self.num_rollouts
        if not self._clean:
            raise RuntimeError("RolloutRecorder.build: no frame was recorded")
        device = self._clean[0].device
        out = TensorDict(
            {
                "group": self.group.to(device),
                "control_index": self.control_index.to(device),
                "reward": torch.stack(self._reward, dim=1),  # [R, F]
                "clean": torch.stack(self._clean, dim=1),  # [R, F, ...]
            },
            batch_size=[r],
            device=device,
        )
        if self._terms:
            out["reward_terms"] = TensorDict(
                {k: torch.stack(v, dim=1) for k, v in self._terms.items()}, batch_size=[r, len(self._reward)]
            )
        num_steps = len(self._steps["frame"])
        if num_steps:
            steps = {k: torch.stack(v, dim=1) for k, v in self._steps.items()}  # [R, S, ...]
        else:  # a pure-ODE rollout (evaluation): empty step tables with the right trailing shapes
            latent_shape = tuple(self._clean[0].shape[1:])
            steps = {k: torch.zeros(r, 0, dtype=torch.long if k in ("frame", "step") else torch.float32, device=device) for k in STEP_KEYS}
            for k in ("latent", "action", "mean"):
                steps[k] = torch.zeros(r, 0, *latent_shape, device=device)
        out["steps"] = TensorDict(steps, batch_size=[r, num_steps])
        return out


def step_advantages(frame_advantages: Tensor, frame: Tensor) -> Tensor:
    """Advantage of each stochastic step: ``frame_advantages [R, F]`` gathered at ``frame [R, S]`` -> ``[R, S]``."""
    return torch.gather(frame_advantages, 1, frame.long())
