"""TrajectoryHingeReward: values by hand with a tracker of known output, monotonicity, errors, and LK end to end."""

from __future__ import annotations

import pytest
import torch

from rewards.trackers import LucasKanadeTracker
from rewards.trajectory import TrajectoryHingeReward, hinge_queries, trajectory_hinge
from rldiff.protocols import PointTracker, Reward, StreamingPointTracker
from rldiff.types import Control


class KnownTracker:
    """Stand-in tracker that returns fixed tracks/visibility (ignores the pixels) and records its queries."""

    def __init__(self, tracks: torch.Tensor, visibility: torch.Tensor):
        self.tracks, self.visibility = tracks, visibility  # [B, T, K, 2], [B, T, K]
        self.queries: torch.Tensor | None = None
        self._t = 0

    def track(self, video, queries):
        self.queries = queries
        return self.tracks[:, : video.shape[1]], self.visibility[:, : video.shape[1]]

    def reset(self, queries):
        self.queries, self._t = queries, 0

    def step(self, frames):
        t0, self._t = self._t, self._t + frames.shape[1]
        return self.tracks[:, t0 : self._t], self.visibility[:, t0 : self._t]


def make_control(trajectory: torch.Tensor, visibility: torch.Tensor | None = None, size: int = 16) -> Control:
    b, t, k, _ = trajectory.shape
    vis = torch.ones(b, t, k, dtype=torch.bool) if visibility is None else visibility
    return Control(trajectory=trajectory, visibility=vis, reference=torch.zeros(b, 3, size, size), prompt=["p"] * b)


def by_hand_case():
    """B=2, T=3, K=2 with lam=2, alpha=0.05; expected values in the comments."""
    traj = torch.tensor([[[0.2, 0.2], [0.6, 0.5]]]).repeat(2, 3, 1, 1)  # [2, 3, 2, 2] both points still
    offsets = torch.tensor([
        [[[0.0, 0.0], [0.0, 0.0]], [[0.1, 0.0], [0.0, 0.2]], [[0.3, 0.0], [0.0, 0.1]]],
        [[[0.0, 0.0], [0.0, 0.0]], [[0.1, 0.0], [0.0, 0.2]], [[0.1, 0.1], [0.0, 0.0]]],
    ])  # fmt: skip
    tracker_vis = torch.ones(2, 3, 2, dtype=torch.bool)
    tracker_vis[0, 2, 1] = False  # row 0, frame 2: the tracker lost point 1
    target_vis = torch.ones(2, 3, 2, dtype=torch.bool)
    target_vis[1, 0, 1] = False  # row 1: point 1 hidden at frame 0 -> never queried, never counts
    target_vis[1, 2, 0] = False  # row 1, frame 2: point 0 hidden -> no counted point left at frame 2
    expected = torch.tensor([
        # row 0: t0 err 0 -> 2 * 0.05 = 0.1; t1 err (0.01 + 0.04) / 2 = 0.025 -> 2 * 0.025 = 0.05;
        #        t2 only point 0 counts, err 0.09 > alpha -> 0
        [0.1, 0.05, 0.0],
        # row 1: only point 0 counts; t0 0.1; t1 err 0.01 -> 2 * 0.04 = 0.08; t2 nothing counted -> 0
        [0.1, 0.08, 0.0],
    ])  # fmt: skip
    return traj, traj + offsets, tracker_vis, target_vis, expected


def test_hinge_values_by_hand():
    traj, tracks, tracker_vis, target_vis, expected = by_hand_case()
    reward = TrajectoryHingeReward(KnownTracker(tracks, tracker_vis), lam=2.0, alpha=0.05)
    assert isinstance(reward, Reward)
    control = make_control(traj, target_vis)
    video = torch.rand(2, 3, 3, 16, 16)
    out = reward.score(video, control)
    assert out.shape == (2, 3)
    assert torch.allclose(out, expected, atol=1e-6), out
    # the tracker was asked for (0, trajectory[:, 0]); the point hidden at frame 0 is queried at the centre
    assert torch.allclose(reward.tracker.queries[0], torch.tensor([[0.0, 0.2, 0.2], [0.0, 0.6, 0.5]]))
    assert torch.allclose(reward.tracker.queries[1, 1], torch.tensor([0.0, 0.5, 0.5]))


def test_streaming_equals_offline_by_hand():
    traj, tracks, tracker_vis, target_vis, expected = by_hand_case()
    reward = TrajectoryHingeReward(KnownTracker(tracks, tracker_vis), lam=2.0, alpha=0.05)
    reward.reset(make_control(traj, target_vis))
    video = torch.rand(2, 3, 3, 16, 16)
    parts = [reward.step(video[:, :1]), reward.step(video[:, 1:])]
    assert [set(p) for p in parts] == [{"reward", "lost"}, {"reward", "lost"}]
    assert torch.allclose(torch.cat([p["reward"] for p in parts], dim=1), expected, atol=1e-6)
    # lost share of the counted points: row 0 lost 1 of 2 at frame 2; row 1 counts only point 0, never lost
    lost = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    assert torch.equal(torch.cat([p["lost"] for p in parts], dim=1), lost)
    offline = TrajectoryHingeReward(KnownTracker(tracks, tracker_vis), lam=2.0, alpha=0.05).score_components(video, make_control(traj, target_vis))
    assert torch.equal(offline["lost"], lost)


def test_hinge_is_monotone_in_the_error():
    traj = torch.rand(1, 1, 4, 2)
    direction = torch.nn.functional.normalize(torch.randn(1, 1, 4, 2), dim=-1)
    vis = torch.ones(1, 1, 4, dtype=torch.bool)
    scales = torch.linspace(0, 0.3, 31)
    values = torch.stack([trajectory_hinge(traj + s * direction, vis, traj, vis, 1.5, 0.04)[0, 0] for s in scales])
    assert values[0] == pytest.approx(1.5 * 0.04)  # zero error -> lam * alpha
    assert bool((values[1:] <= values[:-1]).all())  # never increases with the error
    positive = values > 0
    assert bool((values[1:][positive[1:]] < values[:-1][positive[1:]]).all())  # strictly, until the hinge clips
    assert values[-1] == 0  # error 0.09 > alpha = 0.04


def test_lost_tracks_count_as_misses():
    """A target-visible point the tracker lost is a full miss (error alpha), never dropped from the mean."""
    traj = torch.tensor([[[[0.3, 0.3], [0.7, 0.6]]]])  # [1, 1, 2, 2]
    both = torch.ones(1, 1, 2, dtype=torch.bool)
    one_lost = torch.tensor([[[True, False]]])
    lam, alpha = 2.0, 0.04
    assert trajectory_hinge(traj, both, traj, both, lam, alpha)[0, 0] == pytest.approx(lam * alpha)
    # point 0 exact, point 1 lost: mean error alpha / 2 (before this rule: the lost point dropped out -> lam * alpha)
    assert trajectory_hinge(traj, one_lost, traj, both, lam, alpha)[0, 0] == pytest.approx(lam * alpha / 2)
    # every counted point lost -> 0, whatever the (stale) positions say
    assert trajectory_hinge(traj, ~both, traj, both, lam, alpha)[0, 0] == 0
    # a point the target hides does not count, lost or not
    target = torch.tensor([[[True, False]]])
    assert trajectory_hinge(traj, one_lost, traj, target, lam, alpha)[0, 0] == pytest.approx(lam * alpha)


def test_stale_rule_scores_lost_tracks_where_the_tracker_left_them():
    traj = torch.tensor([[[[0.3, 0.3], [0.7, 0.6]]]])  # [1, 1, 2, 2]
    both = torch.ones(1, 1, 2, dtype=torch.bool)
    one_lost = torch.tensor([[[True, False]]])
    stale = traj + torch.tensor([[[[0.0, 0.0], [0.1, 0.0]]]])  # the lost point was left 0.1 away: error 0.01
    lam, alpha = 2.0, 0.04
    # mean error (0 + 0.01) / 2 -> 2 * (0.04 - 0.005) = 0.07; the visibility flag plays no part
    assert trajectory_hinge(stale, one_lost, traj, both, lam, alpha, lost="stale")[0, 0] == pytest.approx(0.07)
    assert trajectory_hinge(stale, one_lost, traj, both, lam, alpha, lost="stale") == trajectory_hinge(stale, both, traj, both, lam, alpha, lost="stale")
    assert trajectory_hinge(stale, one_lost, traj, both, lam, alpha, lost="miss")[0, 0] == pytest.approx(0.04)  # (0 + 0.04) / 2
    with pytest.raises(ValueError, match=r"lost must be one of \('miss', 'stale'\), got 'drop'"):
        trajectory_hinge(stale, one_lost, traj, both, lam, alpha, lost="drop")
    with pytest.raises(ValueError, match=r"TrajectoryHingeReward: lost must be one of"):
        TrajectoryHingeReward(lost="drop")


def test_per_point_hinge_by_hand_and_never_rewards_worse_points():
    traj = torch.tensor([[[[0.3, 0.3], [0.7, 0.6]]]])  # [1, 1, 2, 2]
    vis = torch.ones(1, 1, 2, dtype=torch.bool)
    tracks = traj + torch.tensor([[[[0.1, 0.0], [0.0, 0.3]]]])  # errors 0.01 and 0.09
    lam, alpha = 2.0, 0.04
    # mean form: (0.01 + 0.09) / 2 = 0.05 > alpha -> 0; per point: (0.03 + 0) / 2 * lam = 0.03
    assert trajectory_hinge(tracks, vis, traj, vis, lam, alpha)[0, 0] == 0
    assert trajectory_hinge(tracks, vis, traj, vis, lam, alpha, per_point=True)[0, 0] == pytest.approx(0.03)
    # with every error below alpha the two forms agree
    near = traj + 0.05
    assert trajectory_hinge(near, vis, traj, vis, lam, alpha, per_point=True) == pytest.approx(trajectory_hinge(near, vis, traj, vis, lam, alpha))
    # property: moving a point further away or losing it never raises the per-point reward
    gen = torch.Generator().manual_seed(0)
    traj = torch.rand(64, 4, 5, 2, generator=gen)
    target = torch.rand(64, 4, 5, generator=gen) > 0.2
    tracks = traj + 0.2 * torch.randn(64, 4, 5, 2, generator=gen)
    seen = torch.rand(64, 4, 5, generator=gen) > 0.3
    base = trajectory_hinge(tracks, seen, traj, target, lam, alpha, per_point=True)
    worse_tracks = traj + 1.5 * (tracks - traj)
    assert bool((trajectory_hinge(worse_tracks, seen, traj, target, lam, alpha, per_point=True) <= base + 1e-7).all())
    fewer_seen = seen & (torch.rand(64, 4, 5, generator=gen) > 0.5)
    assert bool((trajectory_hinge(tracks, fewer_seen, traj, target, lam, alpha, per_point=True) <= base + 1e-7).all())
    assert bool((trajectory_hinge(tracks, fewer_seen, traj, target, lam, alpha, per_point=True) < base).any())


def test_lk_hinge_ranks_following_above_a_frozen_video(make_sprite_video):
    """The reward hack GRPO found with the old settings: a video that does not move. Following must beat it."""
    video, centres = make_sprite_video(seed=5)
    control = make_control(centres.unsqueeze(2), size=32)  # [1, T, 1, 2]
    frozen = video[:, :1].expand_as(video).contiguous()
    for per_point, lost in ((False, "miss"), (True, "miss"), (True, "stale")):
        reward = TrajectoryHingeReward(LucasKanadeTracker(), lam=1.0, alpha=0.01, per_point=per_point, lost=lost)
        follow, still = reward.score(video, control), reward.score(frozen, control)
        assert float(follow[:, 1:].sum()) > 2 * float(still[:, 1:].sum()), (follow, still)
        assert bool((still[:, 4:] == 0).all())  # > 0.1 away from the start -> nothing


def test_hinge_queries_only_frame_zero_points():
    traj = torch.tensor([[[[0.1, 0.9], [0.4, 0.4]], [[0.2, 0.8], [0.5, 0.5]]]])  # [1, 2, 2, 2]
    vis = torch.tensor([[[True, False], [True, True]]])
    queries, counts = hinge_queries(traj, vis)
    assert torch.equal(queries, torch.tensor([[[0.0, 0.1, 0.9], [0.0, 0.5, 0.5]]]))
    assert torch.equal(counts, torch.tensor([[True, False]]))


def test_lk_hinge_end_to_end_rewards_the_right_trajectory(make_sprite_video):
    video, centres = make_sprite_video(seed=3)
    right = make_control(centres.unsqueeze(2), size=32)  # [1, T, 1, 2]: drag the sprite's centre
    wrong = make_control(centres[:, :1].expand(1, 8, 2).unsqueeze(2).contiguous(), size=32)  # asks the sprite to stay
    reward = TrajectoryHingeReward(LucasKanadeTracker(), lam=1.0, alpha=0.01)
    good, bad = reward.score(video, right), reward.score(video, wrong)
    # LK tracks within ~0.01 (normalized) -> error^2 <= 1e-4 -> reward >= 0.0099 on every frame
    assert bool((good >= 0.0099).all()), good
    # the sprite moves ~2.5 px per frame: from frame 2 on it is > 0.1 away from the start -> hinge clips to 0
    assert bool((bad[:, 3:] == 0).all())
    assert bool((good[:, 1:] > bad[:, 1:]).all()) and torch.equal(good[:, 0], bad[:, 0])  # both start on the query
    # offline score == streaming reset + step frame by frame (LK's online form is its offline form)
    reward.reset(right)
    streamed = torch.cat([reward.step(video[:, t : t + 1])["reward"] for t in range(8)], dim=1)
    assert torch.equal(streamed, good)


def test_errors_name_the_culprit():
    traj, tracks, tracker_vis, target_vis, _ = by_hand_case()
    control = make_control(traj, target_vis)
    video = torch.rand(2, 3, 3, 16, 16)
    reward = TrajectoryHingeReward(KnownTracker(tracks, tracker_vis), lam=2.0, alpha=0.05)
    with pytest.raises(ValueError, match=r"video values must lie in \[0, 1\]"):
        reward.score(video * 2, control)
    with pytest.raises(ValueError, match=r"video must be \[B, T, 3, H, W\]"):
        reward.score(video[:, :, :2], control)
    with pytest.raises(ValueError, match="covers 3 frames, needs T = 2"):
        reward.score(video[:, :2], control)
    broken = make_control(traj, target_vis)
    broken.trajectory = traj.clone().index_fill_(1, torch.tensor([1]), float("nan"))  # mutated after validation
    with pytest.raises(ValueError, match="control.trajectory contains NaN"):
        reward.score(video, broken)
    broken.trajectory = traj[..., :1]
    with pytest.raises(ValueError, match=r"control.trajectory must be \[B=2, T, K, 2\]"):
        reward.score(video, broken)
    nan_tracker = TrajectoryHingeReward(KnownTracker(torch.full_like(tracks, float("nan")), tracker_vis))
    with pytest.raises(ValueError, match="KnownTracker returned tracks with NaN"):
        nan_tracker.score(video, control)
    short_tracker = TrajectoryHingeReward(KnownTracker(tracks[:, :, :1], tracker_vis[:, :, :1]))
    with pytest.raises(ValueError, match=r"KnownTracker returned tracks of shape \(2, 3, 1, 2\), expected"):
        short_tracker.score(video, control)
    with pytest.raises(RuntimeError, match="before reset"):
        TrajectoryHingeReward(KnownTracker(tracks, tracker_vis)).step(video)
    with pytest.raises(TypeError, match=r"tracker must have track\(video, queries\) \(a PointTracker\), got object"):
        TrajectoryHingeReward(tracker=object())
    with pytest.raises(ValueError, match="alpha must be > 0"):
        TrajectoryHingeReward(alpha=0.0)


class OfflineOnlyTracker:
    """A tracker with only ``track`` (the PointTracker contract), e.g. an offline-only learned tracker."""

    def __init__(self, tracks: torch.Tensor, visibility: torch.Tensor):
        self.tracks, self.visibility = tracks, visibility

    def track(self, video, queries):
        return self.tracks[:, : video.shape[1]], self.visibility[:, : video.shape[1]]


def test_offline_score_needs_only_track_and_streaming_says_what_is_missing():
    traj, tracks, tracker_vis, target_vis, expected = by_hand_case()
    tracker = OfflineOnlyTracker(tracks, tracker_vis)
    assert isinstance(tracker, PointTracker) and not isinstance(tracker, StreamingPointTracker)
    assert isinstance(LucasKanadeTracker(), StreamingPointTracker)
    assert isinstance(KnownTracker(tracks, tracker_vis), StreamingPointTracker)
    reward = TrajectoryHingeReward(tracker, lam=2.0, alpha=0.05)
    control = make_control(traj, target_vis)
    video = torch.rand(2, 3, 3, 16, 16)
    assert torch.allclose(reward.score(video, control), expected, atol=1e-6)  # same values as by_hand_case
    with pytest.raises(TypeError, match=r"streaming form \(reset/step\) needs .* OfflineOnlyTracker lacks reset, step"):
        reward.reset(control)

    class HalfStreaming(OfflineOnlyTracker):
        def reset(self, queries):
            pass

    with pytest.raises(TypeError, match="HalfStreaming lacks step\\. Offline score"):
        TrajectoryHingeReward(HalfStreaming(tracks, tracker_vis)).reset(control)
