"""The env's plug-in parts (control source, codec, reward) and their CPU defaults.

``envs`` never imports ``policies`` or ``rewards``: a part is either an object
that satisfies its protocol in :mod:`rldiff.protocols`, or a Hydra-style config
mapping with a ``_target_`` (nested ``_target_``s compose), instantiated here
with :func:`hydra.utils.instantiate`. The registered defaults are such configs,
so ``gymnasium.make("rldiff/ARVideoDenoising-v0")`` builds the small CPU world
(Sprites-Drag 32x32 x 8 frames, ``PixelCodec(factor=4)``, the GRPO job's reward:
trajectory hinge over the OpenCV Lucas-Kanade tracker + log Sprites quality)
without an import edge.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from rldiff.protocols import Codec, ControlSource, Reward

__all__ = ["DEFAULT_CONTROLS", "DEFAULT_CODEC", "DEFAULT_REWARD", "resolve_part"]

DEFAULT_CONTROLS = {"_target_": "rldiff.data.sprites.SpritesDrag", "image_size": 32, "num_frames": 8}
DEFAULT_CODEC = {"_target_": "policies.codecs.PixelCodec", "factor": 4}
# The reward the GRPO job trains with (docs/results.md says why each setting): per-track hinge
# lam * mean_k max(0, alpha - ||track_hat - track||^2) over Lucas-Kanade tracks, a lost track scored where it was
# last found (lost="stale": with "miss" a frozen video outscores a moving one and GRPO learns to freeze), frame t
# scored by its change since t-1 (a chained tracker's error accumulates), + 0.7 log Sprites quality (without the
# log, quality collapsed). Coordinates normalized to [0, 1].
DEFAULT_REWARD = {
    "_target_": "rewards.CompositeReward",
    "rewards": {
        "trajectory": {
            "_target_": "rewards.IncrementReward",
            "reward": {
                "_target_": "rewards.TrajectoryHingeReward",
                "tracker": {"_target_": "rewards.trackers.LucasKanadeTracker"},
                "lam": 20.0,
                "alpha": 0.05,
                "per_point": True,
                "lost": "stale",
            },
        },
        "quality": {"_target_": "rewards.LogReward", "reward": {"_target_": "rewards.sprites.SpritesQualityReward"}, "floor": 1e-4},
    },
    "weights": {"quality": 0.7},
}

_PROTOCOLS = {"control_source": ControlSource, "codec": Codec, "reward": Reward}


def resolve_part(value, name: str):
    """``value`` itself if it satisfies the protocol of ``name``, else instantiate its ``_target_`` config.

    ``name`` is one of ``"control_source"``, ``"codec"``, ``"reward"``. Raises a
    ``TypeError`` naming the argument when the result does not satisfy the protocol.
    """
    protocol = _PROTOCOLS[name]
    if isinstance(value, Mapping) or type(value).__name__ == "DictConfig":
        if "_target_" not in value:
            raise ValueError(f"{name}: a config mapping needs a '_target_' key, got keys {sorted(value)}")
        from hydra.utils import instantiate  # lazy: only configs need Hydra

        value = instantiate(copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value, _convert_="all")
    if not isinstance(value, protocol):
        raise TypeError(
            f"{name} must satisfy rldiff.protocols.{protocol.__name__} (or be a '_target_' config of one), "
            f"got {type(value).__name__}"
        )
    return value
