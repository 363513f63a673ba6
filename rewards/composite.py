"""A weighted sum of named rewards, each component reported (AR-Drag: aesthetic + trajectory)."""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from rewards.base import check_reward_dict
from rewards.registry import register_reward
from rldiff.protocols import Reward
from rldiff.types import Control, check_video

__all__ = ["CompositeReward"]


@register_reward("composite")
class CompositeReward:
    """``reward = sum_name weights[name] * rewards[name]`` (+ weighted sub-components), per pixel frame.

    ``step`` (and ``score_components``) return ``{"reward": total, <name>: the
    component's unweighted reward, <name>/<key>: the component's own
    components}``, all ``[B, t]``. Components are called in the order given.

    A weight keyed ``"<name>/<key>"`` adds that much of component ``name``'s own
    component ``key`` to the total as well: ``{"trajectory/lost": -1.0}``
    subtracts the share of tracks the trajectory reward's tracker lost, from the
    same tracker pass (a component that does not return ``key`` is an error).

    Args:
        rewards: named rewards (a dict or any mapping, e.g. built by Hydra from
            nested ``_target_``s). Names must not be ``"reward"`` nor contain ``/``.
        weights: weight per name (default 1.0 for every name not given) and per
            ``"<name>/<key>"`` sub-component (default: not added).
    """

    def __init__(self, rewards: Mapping[str, Reward], weights: Mapping[str, float] | None = None):
        if not isinstance(rewards, Mapping) or not rewards:
            raise ValueError(f"CompositeReward: rewards must be a non-empty mapping name -> reward, got {type(rewards).__name__}")
        self.rewards: dict[str, Reward] = {str(k): v for k, v in rewards.items()}
        for name, reward in self.rewards.items():
            if name == "reward" or "/" in name:
                raise ValueError(f"CompositeReward: component name {name!r} is reserved or contains '/'")
            if not isinstance(reward, Reward):
                raise TypeError(f"CompositeReward: component {name!r} is a {type(reward).__name__}, not a Reward (score, reset, step)")
        weights = dict(weights or {})
        unknown = sorted(k for k in weights if k.split("/", 1)[0] not in self.rewards or k.endswith("/") or k == "reward")
        if unknown:
            raise ValueError(
                f"CompositeReward: weights name unknown components {unknown}; components are {sorted(self.rewards)} "
                "(or '<component>/<key>' for a component's own key)"
            )
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.rewards}
        self.sub_weights = {key: float(w) for key, w in weights.items() if "/" in key}  # "<name>/<key>" -> weight

    @property
    def term_weights(self) -> dict[str, float]:
        """Every weighted term of the total, ``{name or "<name>/<key>": weight}`` (what per-term advantage estimators weigh)."""
        return {**self.weights, **self.sub_weights}

    def _combine(self, parts: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        total = None
        for name, part in parts.items():
            term = self.weights[name] * part["reward"]  # [B, t]
            total = term if total is None else total + term
            out[name] = part["reward"]
            out.update({f"{name}/{key}": value for key, value in part.items() if key != "reward"})
        for key, weight in self.sub_weights.items():
            if key not in out:
                name = key.split("/", 1)[0]
                have = sorted(k.split("/", 1)[1] for k in out if k.startswith(name + "/"))
                raise KeyError(f"CompositeReward: weights has {key!r} but component {name!r} returned only {have} besides 'reward'")
            total = total + weight * out[key]
        return {"reward": total, **out}

    def reset(self, control: Control) -> None:
        """Reset every component."""
        for reward in self.rewards.values():
            reward.reset(control)

    def step(self, frames: Tensor) -> dict[str, Tensor]:
        """Feed frames ``[B, t, 3, H, W]`` to every component; returns total and components ``[B, t]``."""
        check_video(frames, "CompositeReward.step: frames")
        b, t = frames.shape[:2]
        parts = {name: check_reward_dict(r.step(frames), b, t, f"CompositeReward component {name!r}.step") for name, r in self.rewards.items()}
        return self._combine(parts)

    def score_components(self, video: Tensor, control: Control) -> dict[str, Tensor]:
        """Offline: ``{"reward": [B, T], <name>: [B, T], ...}`` from each component's offline form."""
        check_video(video, "CompositeReward.score: video")
        b, t = video.shape[:2]
        parts = {}
        for name, reward in self.rewards.items():
            if hasattr(reward, "score_components"):
                parts[name] = check_reward_dict(reward.score_components(video, control), b, t, f"CompositeReward component {name!r}.score_components")
            else:
                parts[name] = check_reward_dict({"reward": reward.score(video, control)}, b, t, f"CompositeReward component {name!r}.score")
        return self._combine(parts)

    def score(self, video: Tensor, control: Control) -> Tensor:
        """Offline: ``video [B, T, 3, H, W]`` -> weighted total ``[B, T]``."""
        return self.score_components(video, control)["reward"]
