"""AR-Drag's motion reward: ``lam * max(0, alpha - ||track_hat - track||^2)`` per frame.

The generated video is tracked from the control's first-frame points
``(0, trajectory[:, 0])`` by a :class:`rldiff.protocols.PointTracker`; frame
t scores how close the tracked points land to the requested ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rewards.base import StreamingReward
from rewards.points import check_tracks
from rewards.registry import register_reward
from rldiff.protocols import PointTracker, StreamingPointTracker
from rldiff.types import Control, check_video

__all__ = ["TrajectoryHingeReward", "trajectory_hinge", "lost_fraction", "hinge_queries", "LOST_RULES"]

LOST_RULES = ("miss", "stale")  # how a track the tracker reports lost is scored


def _check_lost(lost: str, who: str) -> None:
    if lost not in LOST_RULES:
        raise ValueError(f"{who}: lost must be one of {LOST_RULES}, got {lost!r}")


def trajectory_hinge(
    tracks: Tensor,
    tracker_visibility: Tensor,
    trajectory: Tensor,
    target_visibility: Tensor,
    lam: float,
    alpha: float,
    per_point: bool = False,
    lost: str = "miss",
) -> Tensor:
    """``[B, T]`` rewards ``lam * max(0, alpha - e_t)``, ``e_t`` = mean over target-visible k of the error.

    All coordinates normalized. ``tracks, trajectory [B, T, K, 2]``;
    ``tracker_visibility, target_visibility [B, T, K]`` bool. A point counts
    at t when the target (control) says it is visible there. Its error is
    ``||tracks - trajectory||^2``; a counted point the tracker lost is a
    full miss, error ``alpha`` (so losing a track never scores like
    following it). A frame with no counted point scores 0.

    ``lost="stale"`` scores every counted point at the position the tracker
    reports, whatever its visibility flag: Lucas-Kanade reports where it last
    found the point, a learned tracker its estimate through the occlusion.
    Losing a point then scores like freezing it, never better, and a policy
    gains nothing by keeping points trackable without moving them (with
    ``"miss"``, a frozen video that the tracker never loses outscores a moving
    one it sometimes loses).

    ``per_point=True`` clips each point's error at ``alpha`` before the
    mean, which makes the reward ``lam * mean_k max(0, alpha - e_k)``: each
    point earns its own hinge, one far-off point cannot zero the frame, and
    no point (lost or not) can raise the reward by being worse. With one
    point, or every error below ``alpha``, both forms agree.
    """
    _check_lost(lost, "trajectory_hinge")
    err = ((tracks - trajectory) ** 2).sum(dim=-1)  # [B, T, K]
    if lost == "miss":
        err = torch.where(tracker_visibility, err, torch.full_like(err, alpha))  # lost -> a full miss
    if per_point:
        err = err.clamp(max=alpha)
    count = target_visibility.sum(dim=-1)  # [B, T]
    mean = torch.where(target_visibility, err, torch.zeros_like(err)).sum(dim=-1) / count.clamp(min=1)  # [B, T]
    reward = lam * (alpha - mean).clamp(min=0.0)  # [B, T]
    return torch.where(count > 0, reward, torch.zeros_like(reward))


def lost_fraction(tracker_visibility: Tensor, target_visibility: Tensor) -> Tensor:
    """``[B, T]`` share of the counted points (``target_visibility [B, T, K]``) the tracker reports lost; 0 where none counts."""
    lost = (target_visibility & ~tracker_visibility).sum(dim=-1)  # [B, T]
    return lost.float() / target_visibility.sum(dim=-1).clamp(min=1).float()


def hinge_queries(trajectory: Tensor, visibility: Tensor) -> tuple[Tensor, Tensor]:
    """Queries ``(0, trajectory[:, 0])`` ``[B, K, 3]`` and which of them count (visible at frame 0) ``[B, K]``.

    Tracks hidden at frame 0 have no point to start from; their query is put
    at the image centre (any valid point would do) and their scores are masked.
    """
    counts = visibility[:, 0]  # [B, K]
    start = torch.where(counts.unsqueeze(-1), trajectory[:, 0], torch.full_like(trajectory[:, 0], 0.5))  # [B, K, 2]
    return torch.cat([torch.zeros_like(start[..., :1]), start], dim=-1), counts  # [B, K, 3]


def _default_tracker() -> PointTracker:
    from rewards.trackers import LucasKanadeTracker

    return LucasKanadeTracker()


@register_reward("trajectory_hinge")
class TrajectoryHingeReward(StreamingReward):
    """``lam * max(0, alpha - mean_k ||track_hat[t, k] - trajectory[t, k]||^2)`` per pixel frame t.

    ``track_hat`` comes from ``tracker`` started at the queries
    ``(0, trajectory[:, 0])``. Only tracks visible at frame 0 are queried; a
    track counts at frame t when the control says it is visible there. A
    counted track the tracker reports lost is a full miss (error ``alpha``,
    ``lost="miss"``: hiding points never pays) or scored where the tracker
    reports it (``lost="stale"``: a lost point scores as if frozen where it
    was last found, so freezing the video does not pay either). Errors are
    in normalized units (the image is 1 x 1), so ``alpha = 0.01`` means a
    mean squared miss of 10% of the image side scores 0. A frame with no
    counted track scores 0. ``per_point=True`` gives each track its own
    hinge, ``lam * mean_k max(0, alpha - e_k)`` (see :func:`trajectory_hinge`).

    Besides ``"reward"`` every call returns the component ``"lost"``, the share of
    the counted tracks the tracker reports lost on each frame
    (:func:`lost_fraction`). With ``lost="stale"`` the hinge does not see a lost
    track until its target moves away; a ``CompositeReward`` can weight the
    component to penalise losing it on the frame it happens (its weight
    ``"trajectory/lost"``).

    Offline (``score``) the tracker runs once over the video (its ``track``
    equals its online form for LK): any :class:`rldiff.protocols.PointTracker`
    (``track`` alone) will do. Streaming, ``reset`` / ``step`` feed the tracker
    online and need a :class:`rldiff.protocols.StreamingPointTracker`
    (``track``, ``reset``, ``step``); ``reset`` says so when the tracker lacks them.

    Args:
        tracker: a :class:`rldiff.protocols.PointTracker` (default: :class:`rewards.trackers.LucasKanadeTracker`,
            which also streams).
        lam: reward scale.
        alpha: hinge margin in squared normalized units.
        per_point: hinge each track separately (errors clipped at ``alpha`` before the mean).
        lost: ``"miss"`` or ``"stale"``, how a lost track is scored (see :func:`trajectory_hinge`).
    """

    def __init__(self, tracker: PointTracker | None = None, lam: float = 1.0, alpha: float = 0.01, per_point: bool = False, lost: str = "miss"):
        super().__init__()
        if tracker is not None and not isinstance(tracker, PointTracker):
            raise TypeError(f"TrajectoryHingeReward: tracker must have track(video, queries) (a PointTracker), got {type(tracker).__name__}")
        if not alpha > 0:
            raise ValueError(f"TrajectoryHingeReward: alpha must be > 0, got {alpha}")
        _check_lost(lost, "TrajectoryHingeReward")  # fail at construction, not at the first frame
        self.tracker = tracker if tracker is not None else _default_tracker()
        self.lam, self.alpha, self.per_point, self.lost = float(lam), float(alpha), bool(per_point), lost
        self._counts: Tensor | None = None

    def _check_trajectory(self, control: Control, frames: int, exact: bool) -> None:
        traj, vis = control.trajectory, control.visibility
        b = control.reference.shape[0]
        if not isinstance(traj, Tensor) or traj.dim() != 4 or traj.shape[0] != b or traj.shape[-1] != 2:
            got = tuple(traj.shape) if isinstance(traj, Tensor) else type(traj).__name__
            raise ValueError(f"TrajectoryHingeReward: control.trajectory must be [B={b}, T, K, 2], got {got}")
        if (traj.shape[1] != frames) if exact else (traj.shape[1] < frames):
            need = f"T = {frames} (the video's frames)" if exact else f"at least {frames} frames (frames seen so far)"
            raise ValueError(f"TrajectoryHingeReward: control.trajectory covers {traj.shape[1]} frames, needs {need}")
        if not bool(torch.isfinite(traj).all()):
            raise ValueError("TrajectoryHingeReward: control.trajectory contains NaN or inf")
        if not isinstance(vis, Tensor) or vis.dtype != torch.bool or tuple(vis.shape) != tuple(traj.shape[:3]):
            got = (tuple(vis.shape), vis.dtype) if isinstance(vis, Tensor) else type(vis).__name__
            raise ValueError(f"TrajectoryHingeReward: control.visibility must be bool {tuple(traj.shape[:3])}, got {got}")

    def _reset(self, control: Control) -> None:
        if not isinstance(self.tracker, StreamingPointTracker):
            name = type(self.tracker).__name__
            missing = [m for m in ("reset", "step") if not callable(getattr(self.tracker, m, None))]
            raise TypeError(
                f"TrajectoryHingeReward: the streaming form (reset/step) needs a tracker with reset(queries) and "
                f"step(frames) (a StreamingPointTracker); {name} lacks {', '.join(missing)}. "
                f"Offline score(video, control) works with {name}.track"
            )
        self._check_trajectory(control, 1, exact=False)
        queries, self._counts = hinge_queries(control.trajectory, control.visibility)
        self.tracker.reset(queries)

    def _score(self, tracks: Tensor, vis: Tensor, control: Control, counts: Tensor, start: int, t: int, device) -> dict[str, Tensor]:
        """Hinge rewards and lost shares ``[B, t]`` on ``device`` of pixel frames ``start .. start + t - 1`` from the tracker's output."""
        check_tracks(tracks, vis, (control.batch_size, t, control.trajectory.shape[2]), type(self.tracker).__name__)
        traj = control.trajectory[:, start : start + t]  # [B, t, K, 2]
        target = control.visibility[:, start : start + t] & counts.unsqueeze(1)  # [B, t, K]
        vis = vis.to(traj.device)
        reward = trajectory_hinge(tracks.to(traj.device).float(), vis, traj.float(), target, self.lam, self.alpha, self.per_point, self.lost)
        return {"reward": reward.to(device), "lost": lost_fraction(vis, target).to(device)}

    def _step(self, frames: Tensor, control: Control, start: int) -> dict[str, Tensor]:
        self._check_trajectory(control, start + frames.shape[1], exact=False)
        tracks, vis = self.tracker.step(frames)
        return self._score(tracks, vis, control, self._counts, start, frames.shape[1], frames.device)

    def score_components(self, video: Tensor, control: Control) -> dict[str, Tensor]:
        """Offline: one ``tracker.track`` over the whole video -> ``{"reward": [B, T], "lost": [B, T]}``."""
        check_video(video, "TrajectoryHingeReward.score: video")
        if not isinstance(control, Control):
            raise TypeError(f"TrajectoryHingeReward.score: control must be an rldiff.types.Control, got {type(control).__name__}")
        if video.shape[0] != control.batch_size:
            raise ValueError(f"TrajectoryHingeReward.score: video batch {video.shape[0]} != control batch {control.batch_size}")
        self._check_trajectory(control, video.shape[1], exact=True)
        queries, counts = hinge_queries(control.trajectory, control.visibility)
        tracks, vis = self.tracker.track(video, queries.to(video.device))
        return self._score(tracks, vis, control, counts, 0, video.shape[1], video.device)
