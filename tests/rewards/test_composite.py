"""FrameReward/StreamingReward bases and CompositeReward: sums, reports components, streaming == offline."""

from __future__ import annotations

import pytest
import torch

from rewards import CompositeReward, FrameReward, StreamingReward, TrajectoryHingeReward
from rldiff.protocols import Reward
from rldiff.types import Control


class Brightness(FrameReward):
    """Mean of each frame (a one-method reward)."""

    def frame_reward(self, frames, control, start):
        return frames.mean(dim=(2, 3, 4))


class FrameIndex(StreamingReward):
    """Reports the pixel-frame index (checks the ``start`` bookkeeping) plus a component 'double'."""

    def _reset(self, control):
        self.resets = getattr(self, "resets", 0) + 1

    def _step(self, frames, control, start):
        idx = torch.arange(start, start + frames.shape[1], dtype=torch.float32).expand(frames.shape[0], -1)  # [B, t]
        return {"reward": idx, "double": 2 * idx}


def control_for(b: int, t: int, size: int = 8) -> Control:
    return Control(trajectory=torch.rand(b, t, 1, 2), visibility=torch.ones(b, t, 1, dtype=torch.bool), reference=torch.zeros(b, 3, size, size), prompt=["x"] * b)


def test_frame_reward_base_gives_score_and_streaming():
    reward = Brightness()
    assert isinstance(reward, Reward)
    video = torch.rand(2, 5, 3, 8, 8)
    control = control_for(2, 5)
    expected = video.mean(dim=(2, 3, 4))
    assert torch.allclose(reward.score(video, control), expected)
    reward.reset(control)
    streamed = torch.cat([reward.step(video[:, a:b])["reward"] for a, b in [(0, 1), (1, 4), (4, 5)]], dim=1)
    assert torch.allclose(streamed, expected)


def test_streaming_base_tracks_frame_indices_and_checks_outputs():
    reward = FrameIndex()
    reward.reset(control_for(1, 6))
    assert torch.equal(reward.step(torch.rand(1, 2, 3, 8, 8))["reward"], torch.tensor([[0.0, 1.0]]))
    assert torch.equal(reward.step(torch.rand(1, 3, 3, 8, 8))["double"], torch.tensor([[4.0, 6.0, 8.0]]))

    class Wrong(FrameReward):
        def frame_reward(self, frames, control, start):
            return frames.mean(dim=(1, 2, 3, 4))  # [B] instead of [B, t]

    with pytest.raises(ValueError, match=r"Wrong._step: entry 'reward' must be \[B, t\] = \(1, 2\), got \(1,\)"):
        Wrong().score(torch.rand(1, 2, 3, 8, 8), control_for(1, 2))
    with pytest.raises(ValueError, match="frames batch 2 != control batch 1"):
        reward.step(torch.rand(2, 1, 3, 8, 8))
    with pytest.raises(TypeError, match="control must be an rldiff.types.Control"):
        reward.reset("not a control")


def test_composite_sums_weighted_and_reports_components():
    video = torch.rand(2, 4, 3, 8, 8)
    control = control_for(2, 4)
    composite = CompositeReward({"bright": Brightness(), "index": FrameIndex()}, weights={"bright": 3.0})
    assert isinstance(composite, Reward)
    out = composite.score_components(video, control)
    bright = video.mean(dim=(2, 3, 4))  # [2, 4]
    index = torch.arange(4.0).expand(2, 4)
    assert set(out) == {"reward", "bright", "index", "index/double"}
    assert torch.allclose(out["bright"], bright) and torch.equal(out["index"], index)  # unweighted components
    assert torch.allclose(out["reward"], 3.0 * bright + 1.0 * index)  # index weight defaults to 1
    assert torch.allclose(composite.score(video, control), out["reward"])
    # streaming in two chunks gives the same dict
    composite.reset(control)
    parts = [composite.step(video[:, :3]), composite.step(video[:, 3:])]
    for key in out:
        assert torch.allclose(torch.cat([p[key] for p in parts], dim=1), out[key]), key


def test_composite_weights_a_components_own_key():
    video = torch.rand(2, 3, 3, 8, 8)
    control = control_for(2, 3)
    composite = CompositeReward({"bright": Brightness(), "index": FrameIndex()}, weights={"index": 0.5, "index/double": -0.25})
    out = composite.score_components(video, control)
    index = torch.arange(3.0).expand(2, 3)
    assert torch.allclose(out["reward"], video.mean(dim=(2, 3, 4)) + 0.5 * index - 0.25 * 2 * index)
    assert torch.equal(out["index/double"], 2 * index)  # still reported unweighted
    composite.reset(control)
    streamed = torch.cat([composite.step(video[:, :1])["reward"], composite.step(video[:, 1:])["reward"]], dim=1)
    assert torch.allclose(streamed, out["reward"])
    # a key the component does not return is named when the rewards come in
    missing = CompositeReward({"bright": Brightness(), "index": FrameIndex()}, weights={"index/triple": 1.0})
    with pytest.raises(KeyError, match=r"weights has 'index/triple' but component 'index' returned only \['double'\]"):
        missing.score(video, control)


def test_composite_with_the_hinge_over_lk(make_sprite_video):
    video, centres = make_sprite_video(frames=4)
    control = Control(trajectory=centres.unsqueeze(2), visibility=torch.ones(1, 4, 1, dtype=torch.bool), reference=video[:, 0], prompt=["sprite"])
    composite = CompositeReward({"trajectory": TrajectoryHingeReward(lam=2.0, alpha=0.01), "bright": Brightness()}, {"trajectory": 0.5})
    out = composite.score_components(video, control)
    hinge = TrajectoryHingeReward(lam=2.0, alpha=0.01).score(video, control)
    assert torch.allclose(out["trajectory"], hinge)
    assert torch.allclose(out["reward"], 0.5 * hinge + video.mean(dim=(2, 3, 4)))


def test_composite_errors_name_the_culprit():
    with pytest.raises(ValueError, match=r"weights name unknown components \['motion'\]"):
        CompositeReward({"bright": Brightness()}, weights={"motion": 1.0})
    with pytest.raises(ValueError, match=r"weights name unknown components \['motion/lost'\]"):
        CompositeReward({"bright": Brightness()}, weights={"motion/lost": 1.0})
    with pytest.raises(ValueError, match="component name 'reward' is reserved"):
        CompositeReward({"reward": Brightness()})
    with pytest.raises(TypeError, match="component 'x' is a int, not a Reward"):
        CompositeReward({"x": 3})
    with pytest.raises(ValueError, match="non-empty mapping"):
        CompositeReward({})
