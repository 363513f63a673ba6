"""Reward registry: names, third-party plugins through the ``rldiff.rewards`` entry-point group, Hydra ``_target_``."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch
from omegaconf import OmegaConf

import rewards.registry as registry
from rewards import CompositeReward, LucasKanadeTracker, TrajectoryHingeReward, make_reward, register_reward
from rewards.registry import ENTRY_POINT_GROUP, available_rewards, instantiate_reward
from rldiff.types import Control

PLUGIN = '''
from rewards.base import FrameReward


class PluginReward(FrameReward):
    """A third-party reward: the mean red channel times a scale."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def frame_reward(self, frames, control, start):
        return self.scale * frames[:, :, 0].mean(dim=(2, 3))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An importable third-party module and entry points that advertise it (plus one broken plugin)."""
    (tmp_path / "rldiff_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registrations made here are undone
    advertised = [
        metadata.EntryPoint(name="red", value="rldiff_test_plugin:PluginReward", group=ENTRY_POINT_GROUP),
        metadata.EntryPoint(name="broken", value="rldiff_no_such_module:Reward", group=ENTRY_POINT_GROUP),
        metadata.EntryPoint(name="other_group", value="rldiff_test_plugin:PluginReward", group="something.else"),
    ]
    real = metadata.entry_points

    def entry_points(**params):
        if params.get("group") != ENTRY_POINT_GROUP:
            return real(**params)
        return metadata.EntryPoints([ep for ep in advertised if ep.group == ENTRY_POINT_GROUP])

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    return tmp_path


def control_for(video: torch.Tensor) -> Control:
    b, t = video.shape[:2]
    return Control(trajectory=torch.rand(b, t, 1, 2), visibility=torch.ones(b, t, 1, dtype=torch.bool), reference=video[:, 0], prompt=["x"] * b)


def test_builtin_names():
    assert {"aesthetic", "trajectory_hinge", "composite", "sprites_quality"} <= set(available_rewards())
    reward = make_reward("trajectory_hinge", lam=3.0, alpha=0.02)
    assert isinstance(reward, TrajectoryHingeReward) and reward.lam == 3.0 and isinstance(reward.tracker, LucasKanadeTracker)
    with pytest.raises(KeyError, match=r"unknown reward 'nope'; available: \[.*'trajectory_hinge'"):
        make_reward("nope")


def test_entry_point_plugin_is_discovered_and_built(plugin):
    assert "red" in available_rewards() and "broken" in available_rewards() and "other_group" not in available_rewards()
    reward = make_reward("red", scale=2.0)
    assert type(reward).__module__ == "rldiff_test_plugin"
    video = torch.rand(1, 3, 3, 8, 8)
    assert torch.allclose(reward.score(video, control_for(video)), 2.0 * video[:, :, 0].mean(dim=(2, 3)))
    with pytest.raises(ImportError, match=r"reward plugin 'broken' \(entry point 'rldiff_no_such_module:Reward'"):
        make_reward("broken")


def test_register_reward_and_its_errors(plugin):
    @register_reward("constant")
    class Constant:
        def score(self, video, control):
            return torch.ones(video.shape[:2])

        def reset(self, control):
            pass

        def step(self, frames):
            return {"reward": torch.ones(frames.shape[:2])}

    assert isinstance(make_reward("constant"), Constant)
    with pytest.raises(ValueError, match="name 'constant' is already taken"):
        register_reward("constant")(type("Other", (), {}))
    register_reward("not_a_reward")(lambda: object())
    with pytest.raises(TypeError, match=r"make_reward\('not_a_reward'\) built a object, which lacks the Reward methods"):
        make_reward("not_a_reward")


def test_hydra_target_builds_nested_rewards(plugin):
    cfg = OmegaConf.create({
        "_target_": "rewards.CompositeReward",
        "rewards": {
            "trajectory": {
                "_target_": "rewards.TrajectoryHingeReward",
                "tracker": {"_target_": "rewards.trackers.LucasKanadeTracker", "window": 15},
                "lam": 2.0,
                "alpha": 0.02,
            },
            "red": {"_target_": "rldiff_test_plugin.PluginReward", "scale": 0.5},
        },
        "weights": {"trajectory": 1.0, "red": 4.0},
    })  # fmt: skip
    reward = instantiate_reward(cfg)
    assert isinstance(reward, CompositeReward) and set(reward.rewards) == {"trajectory", "red"}
    hinge = reward.rewards["trajectory"]
    assert isinstance(hinge.tracker, LucasKanadeTracker) and hinge.tracker.window == 15 and hinge.alpha == 0.02
    video = torch.rand(1, 2, 3, 8, 8)
    control = control_for(video)
    out = reward.score_components(video, control)
    assert torch.allclose(out["red"], 0.5 * video[:, :, 0].mean(dim=(2, 3)))
    assert torch.allclose(out["reward"], out["trajectory"] + 4.0 * out["red"])
    with pytest.raises(KeyError, match="needs a '_target_' key"):
        instantiate_reward({"lam": 1.0})
