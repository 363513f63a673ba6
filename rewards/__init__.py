"""Reward plugins: one signature, ``score(video [B, T, 3, H, W], control) -> [B, T]`` plus a streaming form.

See :class:`rldiff.protocols.Reward`. Built in: :class:`AestheticReward`
(LAION aesthetic predictor on CLIP ViT-L/14), :class:`TrajectoryHingeReward`
(AR-Drag's motion reward over a :class:`rldiff.protocols.PointTracker` from
:mod:`rewards.trackers`), :class:`SpritesQualityReward` (fidelity to the
reference in the Sprites-Drag world) and :class:`CompositeReward` (weighted
sum). New
rewards subclass :class:`FrameReward` / :class:`StreamingReward` or just meet
the protocol, and plug in by name (:func:`register_reward`, entry point group
``rldiff.rewards``) or by Hydra ``_target_``. Importing this package loads no
weights.
"""

from rewards.aesthetic import AestheticReward, LaionAestheticHead, clip_preprocess
from rewards.base import FrameReward, StreamingReward
from rewards.composite import CompositeReward
from rewards.consistency import TrackConsistencyReward
from rewards.registry import available_rewards, get_reward_factory, instantiate_reward, make_reward, register_reward
from rewards.sprites import SpritesQualityReward
from rewards.trackers import CoTrackerTracker, LucasKanadeTracker
from rewards.trajectory import TrajectoryHingeReward, trajectory_hinge
from rewards.transforms import IncrementReward, LogReward, RewardTransform

register_reward("sprites_quality")(SpritesQualityReward)

__all__ = [
    "AestheticReward",
    "CoTrackerTracker",
    "CompositeReward",
    "FrameReward",
    "IncrementReward",
    "LaionAestheticHead",
    "LogReward",
    "LucasKanadeTracker",
    "RewardTransform",
    "SpritesQualityReward",
    "StreamingReward",
    "TrackConsistencyReward",
    "TrajectoryHingeReward",
    "available_rewards",
    "clip_preprocess",
    "get_reward_factory",
    "instantiate_reward",
    "make_reward",
    "register_reward",
    "trajectory_hinge",
]
