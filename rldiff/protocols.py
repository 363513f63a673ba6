"""The protocols through which envs, policies, rewards and the trainer meet.

``envs``, ``policies`` and ``rewards`` never import each other: each satisfies
(or consumes) one of these structural types, and ``examples/`` (or Hydra
``_target_``s) wires concrete classes together. Shapes use the letters of
ARCHITECTURE.md: ``B`` controls, ``G`` rollouts per control, ``R = B * G``
rollouts, ``F`` latent frames, ``N`` steps per frame, ``T`` pixel frames,
``K`` tracks, ``C, H, W`` latent channels and size. The rollout TensorDict
layout is documented in :mod:`rldiff.rollout`.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

import torch
from tensordict import TensorDict
from torch import Tensor

from rldiff.types import Control

__all__ = [
    "ControlSource",
    "Codec",
    "StreamingDecoder",
    "PointTracker",
    "StreamingPointTracker",
    "Reward",
    "Policy",
    "RolloutPolicy",
    "Collector",
]


@runtime_checkable
class ControlSource(Protocol):
    """Draws batches of controls (a dataset split, a synthetic world, user drags)."""

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Control:
        """``B = batch_size`` controls, reproducible from ``generator``."""
        ...


@runtime_checkable
class StreamingDecoder(Protocol):
    """Decodes a video latent frame by latent frame, carrying the codec's causal state."""

    def decode_next(self, latent_frame: Tensor) -> Tensor:
        """``[B, C, H, W]`` latent frame -> ``[B, t, 3, H_px, W_px]`` pixel frames in [0, 1]."""
        ...


@runtime_checkable
class Codec(Protocol):
    """Maps pixel videos to latent videos and back.

    ``temporal_factor`` pixel frames per latent frame after the first latent
    frame, which covers one pixel frame (Wan: 4; an image codec: 1).
    """

    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def encode(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H_px, W_px]`` in [0, 1] -> ``[B, F, C, H, W]``."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """``[B, F, C, H, W]`` -> ``[B, T, 3, H_px, W_px]`` in [0, 1]."""
        ...

    def stream_decoder(self) -> StreamingDecoder:
        """A fresh streaming decoder for one batch of videos."""
        ...


@runtime_checkable
class PointTracker(Protocol):
    """Tracks query points through a whole video (offline): the contract is ``track`` alone.

    Coordinates are normalized (x right, y down, in [0, 1]); videos are
    ``[B, T, 3, H, W]`` float in [0, 1].
    """

    def track(self, video: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        """``queries [B, K, 3]`` as (t, x, y) -> ``(tracks [B, T, K, 2], visibility [B, T, K] bool)``."""
        ...


@runtime_checkable
class StreamingPointTracker(PointTracker, Protocol):
    """A :class:`PointTracker` that also tracks frame by frame (online): ``reset`` then ``step``.

    Streaming rewards (the env's per-frame form) need this; offline scoring
    needs only ``track``.
    """

    def reset(self, queries: Tensor) -> None:
        """Start online tracking of ``queries [B, K, 3]`` (t, x, y)."""
        ...

    def step(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Feed the next pixel frames ``[B, t, 3, H, W]``; returns their ``(tracks [B, t, K, 2], visibility [B, t, K])``."""
        ...


@runtime_checkable
class Reward(Protocol):
    """A reward plugin: one value per pixel frame.

    ``score`` is the offline form. The streaming form is ``reset(control)`` at
    episode start, then ``step(frames)`` with the pixel frames that finished
    since the last call (in order, starting at pixel frame 0). ``step`` returns
    a dict of ``[B, t]`` tensors: key ``"reward"`` holds the total and any other
    key a named component (a plain reward returns just ``{"reward": ...}``).
    A reward that reads nothing from the control (an aesthetic score) accepts
    ``control=None``; one that needs it raises a clear error for ``None``.
    """

    def score(self, video: Tensor, control: Control | None) -> Tensor:
        """``video [B, T, 3, H, W]`` in [0, 1] -> ``[B, T]``."""
        ...

    def reset(self, control: Control | None) -> None: ...

    def step(self, frames: Tensor) -> dict[str, Tensor]: ...


@runtime_checkable
class Policy(Protocol):
    """An acting policy of the AR denoising MDP (driven by an env's collector).

    ``reset(control)`` starts a batch of episodes; ``act(obs, stochastic,
    generator)`` maps an observation TensorDict (batch ``[R]``; keys as the env
    documents: ``snapshot [R, F, C, H, W]``, ``timestep``, ``frame_index``,
    ``step_index``, ...) to a TensorDict with ``action [R, C, H, W]`` (the next
    latent), ``mean [R, C, H, W]``, ``std [R]`` and ``log_prob [R]``
    (``std = 0`` and ``log_prob = 0`` on a deterministic step).
    """

    def reset(self, control: Control) -> None: ...

    def act(self, obs: TensorDict, stochastic: bool, generator: torch.Generator | None = None) -> TensorDict: ...


@runtime_checkable
class RolloutPolicy(Protocol):
    """What the GRPO trainer needs from a policy: recompute the SDE means of recorded steps.

    ``recompute(rollout, control)`` takes a rollout TensorDict (batch ``[R]``,
    layout in :mod:`rldiff.rollout`) and the ``R`` controls of its rows and
    returns the Gaussian means ``[R, S, ...]`` of the recorded stochastic steps
    under the current parameters, with gradients. The trainer turns them into
    log-probs with the recorded actions and stds.
    """

    def recompute(self, rollout: TensorDict, control: Control) -> Tensor: ...

    def parameters(self) -> Iterable[torch.nn.Parameter]: ...


@runtime_checkable
class Collector(Protocol):
    """Runs rollouts: ``R = B * G`` episodes for ``B`` controls, ``G`` noise draws each.

    ``collect(policy, control, group_size, mask, generator)`` uses the
    stochasticity ``mask [F, N]`` (shared by all rollouts of the call) and
    returns the rollout TensorDict of :mod:`rldiff.rollout`, rows in ``[B, G]``
    order (row ``b * G + g``). It runs without gradients. ``num_frames`` (F)
    and ``num_steps`` (N) give the mask's shape.
    """

    num_frames: int
    num_steps: int

    def collect(
        self,
        policy,
        control: Control,
        group_size: int,
        mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> TensorDict: ...
