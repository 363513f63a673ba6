"""envs: autoregressive video denoising as Gymnasium environments, and the rollout collector.

``import envs`` registers ``rldiff/ARVideoDenoising-v0`` (single env entry point
and a natively batched ``vector_entry_point``). Its default kwargs are
``_target_`` configs of the small CPU world (Sprites-Drag 32x32 x 8 frames,
``policies.codecs.PixelCodec(factor=4)``, ``rewards.TrajectoryHingeReward`` over
``rewards.trackers.LucasKanadeTracker``), instantiated with Hydra inside the env,
so this package never imports ``policies`` or ``rewards``.
"""

import gymnasium

from envs.ar_video_env import ARVideoDenoisingEnv
from envs.collector import EnvCollector
from envs.core import World
from envs.parts import DEFAULT_CODEC, DEFAULT_CONTROLS, DEFAULT_REWARD, resolve_part
from envs.spaces import policy_observation
from envs.vector_env import ARVideoDenoisingVectorEnv

__all__ = [
    "ENV_ID",
    "ARVideoDenoisingEnv",
    "ARVideoDenoisingVectorEnv",
    "EnvCollector",
    "World",
    "DEFAULT_CODEC",
    "DEFAULT_CONTROLS",
    "DEFAULT_REWARD",
    "resolve_part",
    "policy_observation",
]

ENV_ID = "rldiff/ARVideoDenoising-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="envs.ar_video_env:ARVideoDenoisingEnv",
        vector_entry_point="envs.vector_env:ARVideoDenoisingVectorEnv",
        kwargs={"control_source": DEFAULT_CONTROLS, "codec": DEFAULT_CODEC, "reward": DEFAULT_REWARD, "num_steps": 3},
        # torch tensors inside: Gymnasium's passive checker expects numpy and would only warn;
        # the numpy face (ArrayConversion) is checked with check_env in tests/envs.
        disable_env_checker=True,
    )
