"""Base classes for reward plugins: write one method, get the offline and the streaming form.

A reward satisfies :class:`rldiff.protocols.Reward`: ``score(video, control) ->
[B, T]`` offline, and ``reset(control)`` + ``step(frames) -> {"reward": [B, t],
...}`` streaming, where ``frames`` are the pixel frames finished since the last
call, in order from frame 0.

- :class:`FrameReward`: a memoryless per-frame reward; implement
  ``frame_reward(frames, control, start) -> [B, t]``.
- :class:`StreamingReward`: a reward with per-episode state (an online
  tracker); implement ``_reset(control)`` and ``_step(frames, control, start)``.

A reward that reads nothing from the control (the aesthetic score) sets
``needs_control = False`` and then accepts ``control=None`` in ``score`` and
``reset``; the others raise a clear error for ``None``.

Both get ``score`` and ``score_components`` by replaying the whole video
through ``reset`` + one ``step``, so the offline and streaming forms agree by
construction (a subclass may override ``score_components`` with a faster
offline path that returns the same values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from rldiff.types import Control, check_video

__all__ = ["StreamingReward", "FrameReward", "check_reward_dict"]


def check_reward_dict(out: object, batch: int, frames: int, who: str) -> dict[str, Tensor]:
    """Raise unless ``out`` is a dict with key ``"reward"`` whose values are all ``[B, t]`` tensors."""
    if not isinstance(out, dict) or "reward" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise TypeError(f"{who} must return a dict with key 'reward' ([B, t] tensors), got {got}")
    for key, value in out.items():
        if not isinstance(value, Tensor) or tuple(value.shape) != (batch, frames):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{who}: entry {key!r} must be [B, t] = {(batch, frames)}, got {got}")
    return out


class StreamingReward(ABC):
    """A reward with per-episode state. Subclasses implement ``_reset`` and ``_step``.

    ``needs_control`` (class attribute, default True): False for a reward that
    reads nothing from the control; it then accepts ``control=None``.
    """

    needs_control: bool = True

    def __init__(self) -> None:
        self._control: Control | None = None
        self._started = False
        self._t = 0

    def reset(self, control: Control | None) -> None:
        """Start an episode batch with ``control`` (B rows; ``None`` allowed when ``needs_control`` is False)."""
        who = type(self).__name__
        if control is None and self.needs_control:
            raise TypeError(f"{who}.reset: control must be an rldiff.types.Control ({who} reads the control), got None")
        if control is not None and not isinstance(control, Control):
            raise TypeError(f"{who}.reset: control must be an rldiff.types.Control, got {type(control).__name__}")
        self._control, self._t, self._started = control, 0, True
        self._reset(control)

    def step(self, frames: Tensor) -> dict[str, Tensor]:
        """Score the next pixel frames ``[B, t, 3, H, W]``; returns ``{"reward": [B, t], ...}``."""
        who = type(self).__name__
        if not self._started:
            raise RuntimeError(f"{who}.step called before reset(control)")
        check_video(frames, f"{who}.step: frames")
        if self._control is not None and frames.shape[0] != self._control.batch_size:
            raise ValueError(f"{who}.step: frames batch {frames.shape[0]} != control batch {self._control.batch_size}")
        out = self._step(frames, self._control, self._t)
        self._t += frames.shape[1]
        return check_reward_dict(out, frames.shape[0], frames.shape[1], f"{who}._step")

    def score(self, video: Tensor, control: Control | None) -> Tensor:
        """Offline form: ``video [B, T, 3, H, W]`` in [0, 1] -> ``[B, T]``."""
        return self.score_components(video, control)["reward"]

    def score_components(self, video: Tensor, control: Control | None) -> dict[str, Tensor]:
        """Offline form with components: ``{"reward": [B, T], <component>: [B, T], ...}``."""
        check_video(video, f"{type(self).__name__}.score: video")
        self.reset(control)
        return self.step(video)

    @abstractmethod
    def _reset(self, control: Control | None) -> None:
        """Start an episode (state reset); ``control`` is already validated (``None`` only if ``needs_control`` is False)."""

    @abstractmethod
    def _step(self, frames: Tensor, control: Control | None, start: int) -> dict[str, Tensor]:
        """``frames [B, t, 3, H, W]`` are pixel frames ``start .. start + t - 1``; return ``{"reward": [B, t], ...}``."""


class FrameReward(StreamingReward):
    """A memoryless per-frame reward: implement ``frame_reward(frames, control, start) -> [B, t]``."""

    def _reset(self, control: Control) -> None:
        pass

    def _step(self, frames: Tensor, control: Control, start: int) -> dict[str, Tensor]:
        return {"reward": self.frame_reward(frames, control, start)}

    @abstractmethod
    def frame_reward(self, frames: Tensor, control: Control, start: int) -> Tensor:
        """``frames [B, t, 3, H, W]`` (pixel frames ``start ..``) -> ``[B, t]``."""
