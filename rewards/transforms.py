"""Rewards made from other rewards by a fixed transform of their value."""

from __future__ import annotations

import torch
from torch import Tensor

from rewards.base import StreamingReward, check_reward_dict
from rewards.registry import register_reward
from rldiff.protocols import Reward
from rldiff.types import Control

__all__ = ["RewardTransform", "LogReward", "IncrementReward"]


class RewardTransform(StreamingReward):
    """A reward made from ``inner``'s per-frame value by :meth:`transform`; the inner components pass through.

    The inner value is kept as component ``"value"`` (in place of an inner
    component of that name). Subclasses set ``prefix`` and write ``transform``.
    """

    prefix = "transform"

    def __init__(self, reward: Reward) -> None:
        super().__init__()
        who = type(self).__name__
        if not isinstance(reward, Reward):
            raise TypeError(f"{who}: reward must be a Reward (score, reset, step), got {type(reward).__name__}")
        self.inner = reward
        self.name = f"{self.prefix}_{getattr(reward, 'name', type(reward).__name__)}"

    @property
    def needs_control(self) -> bool:  # type: ignore[override]
        """As the inner reward: ``control=None`` is fine when it reads no control."""
        return getattr(self.inner, "needs_control", True)

    def _reset(self, control: Control | None) -> None:
        self.inner.reset(control)

    def _step(self, frames: Tensor, control: Control, start: int) -> dict[str, Tensor]:
        b, t = frames.shape[:2]
        out = check_reward_dict(self.inner.step(frames), b, t, f"{type(self).__name__} inner step")
        return {**out, "reward": self.transform(out["reward"]), "value": out["reward"]}

    def transform(self, value: Tensor) -> Tensor:
        """The inner per-frame values ``[B, t]`` of the frames just stepped -> this reward's ``[B, t]``."""
        raise NotImplementedError


@register_reward("log")
class LogReward(RewardTransform):
    """``log(max(reward, floor))`` of a positive reward, per pixel frame; the inner components pass through.

    For a product of factors (``rewards.sprites.SpritesQualityReward``) the log is
    the sum of their logs, so a change of any factor moves it by the same amount
    whatever the others are. The product itself shrinks every change when one
    factor is small: near 0 its spread within a GRPO group vanishes, and a weighted
    sum with another reward ignores it.

    Args:
        reward: the inner reward (values ``>= 0``).
        floor: values below it count as ``floor`` (``log 0`` is ``-inf``).
    """

    prefix = "log"

    def __init__(self, reward: Reward, floor: float = 1e-4) -> None:
        super().__init__(reward)
        if not floor > 0.0:
            raise ValueError(f"LogReward: floor must be > 0, got {floor}")
        self.floor = float(floor)

    def transform(self, value: Tensor) -> Tensor:
        if bool((value < 0).any()):
            raise ValueError(f"LogReward: the inner reward must be >= 0, got a minimum of {float(value.min()):.4g}")
        return torch.log(value.clamp_min(self.floor))


@register_reward("increment")
class IncrementReward(RewardTransform):
    """``r_t - r_{t-1}`` of the inner reward (``r_{-1} = 0``), per pixel frame; the inner components pass through.

    For a reward that accumulates along the video, such as a chained tracker's
    distance to the target (a point it lost at frame 3 stays lost at frame 7),
    frame t's value is mostly what earlier frames did. With per-frame GRPO
    advantages (``gamma = 0``) every later action would then be credited with
    the luck of the earlier ones; the increment credits frame t only with the
    change it made. The increments telescope: their sum over frames is the last
    frame's inner reward, and ``gamma = 1`` returns ``r_last - r_{t-1}``.
    The inner per-frame value is kept as component ``"value"``.

    Args:
        reward: the inner reward.
    """

    prefix = "increment"

    def __init__(self, reward: Reward) -> None:
        super().__init__(reward)
        self._last: Tensor | None = None  # [B] the inner reward of the last frame seen

    def _reset(self, control: Control) -> None:
        super()._reset(control)
        self._last = None

    def transform(self, value: Tensor) -> Tensor:
        last = torch.zeros_like(value[:, :1]) if self._last is None else self._last[:, None]  # [B, 1]
        self._last = value[:, -1]
        return value - torch.cat([last, value[:, :-1]], dim=1)
