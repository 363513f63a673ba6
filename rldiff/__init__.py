"""rldiff: reinforcement-learning fine-tuning of diffusion models.

The core package depends on torch, tensordict and numpy only. Concrete envs,
policies and rewards live in the sibling packages ``envs``, ``policies`` and
``rewards`` and meet through :mod:`rldiff.protocols`.
"""

from rldiff.advantages import group_normalize, group_normalize_by_id, returns_to_go
from rldiff.flow import (
    CPSStep,
    EulerMaruyamaStep,
    StochasticStep,
    cps_step,
    flow_grpo_diffusion,
    gaussian_log_prob,
    ode_step,
    sde_step,
    shifted_sigmas,
)
from rldiff.grpo import grpo_loss
from rldiff.stochasticity import AllSteps, NoSteps, OneStepPerFrame, ProgressiveWindow, SlidingWindow, StochasticitySchedule
from rldiff.types import Control

__version__ = "0.1.0"

__all__ = [
    "AllSteps",
    "CPSStep",
    "Control",
    "EulerMaruyamaStep",
    "NoSteps",
    "OneStepPerFrame",
    "ProgressiveWindow",
    "SlidingWindow",
    "StochasticStep",
    "StochasticitySchedule",
    "flow_grpo_diffusion",
    "cps_step",
    "gaussian_log_prob",
    "group_normalize",
    "group_normalize_by_id",
    "grpo_loss",
    "ode_step",
    "returns_to_go",
    "sde_step",
    "shifted_sigmas",
]
