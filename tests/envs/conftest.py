"""Fixtures for the env tests: small stand-ins for a policy and a reward.

The stand-in policy predicts ``v = x`` (no model: the env tests check the env,
not a network); the stand-in reward scores mean brightness. The real
``FlowPolicy``/``CausalWan.tiny``, ``TrajectoryHingeReward`` and
``SpritesQualityReward`` are exercised in ``test_grpo_integration.py``,
``test_default_env.py`` and ``test_torchrl.py``.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from rldiff.flow import flow_grpo_diffusion, gaussian_log_prob, ode_step, sde_step
from rldiff.types import Control, check_video


class VelocityIsX:
    """A protocol-satisfying policy with no parameters: velocity ``v = x``; SDE steps with Flow-GRPO's eta."""

    def __init__(self, eta: float = 0.7):
        self.eta = eta
        self.calls: list[tuple[int, int, bool]] = []
        self.control: Control | None = None

    def reset(self, control: Control) -> None:
        self.control = control

    def act(self, obs: TensorDict, stochastic: bool, generator=None) -> TensorDict:
        m, n = int(obs["frame_index"][0]), int(obs["step_index"][0])
        self.calls.append((m, n, stochastic))
        x = obs["snapshot"][torch.arange(obs.batch_size[0]), obs["frame_index"]]  # [R, C, H, W]
        sigma, sigma_next = obs["sigma"].view(-1, 1, 1, 1), obs["sigma_next"].view(-1, 1, 1, 1)
        r = x.shape[0]
        if not stochastic:
            action = ode_step(x, x, sigma, sigma_next)
            return TensorDict({"action": action, "mean": action, "std": torch.zeros(r), "log_prob": torch.zeros(r)}, [r])
        diffusion = flow_grpo_diffusion(sigma, self.eta, sigma_next=sigma_next)  # finite at sigma = 1 (peers' convention)
        action, mean, std = sde_step(x, x, sigma, sigma_next, diffusion, generator=generator)
        std = std.reshape(r)
        return TensorDict({"action": action, "mean": mean, "std": std, "log_prob": gaussian_log_prob(action, mean, std)}, [r])


class BrightnessReward:
    """Streaming reward: mean brightness of each pixel frame, plus a component 'red' (mean red channel)."""

    def __init__(self):
        self.frames_seen = 0
        self.control = None

    def score(self, video, control):
        check_video(video)
        return video.mean(dim=(2, 3, 4))

    def reset(self, control):
        self.control, self.frames_seen = control, 0

    def step(self, frames):
        check_video(frames, "frames")
        if frames.shape[0] != self.control.batch_size:
            raise ValueError("batch mismatch")
        self.frames_seen += frames.shape[1]
        return {"reward": frames.mean(dim=(2, 3, 4)), "red": frames[:, :, 0].mean(dim=(2, 3))}


SPRITES = {"_target_": "rldiff.data.sprites.SpritesDrag", "image_size": 32, "num_frames": 4}
CODEC = {"_target_": "policies.codecs.PixelCodec", "factor": 4}


@pytest.fixture
def policy_cls():
    return VelocityIsX


@pytest.fixture
def small_env_kwargs():
    """A 4-frame, 3-step, 32x32 world with the stand-in reward."""
    return {"control_source": SPRITES, "codec": CODEC, "reward": BrightnessReward(), "num_steps": 3}
