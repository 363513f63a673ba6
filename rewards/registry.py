"""Reward registry: names -> reward factories, third-party plugins by entry point, Hydra ``_target_``.

Three ways to build a reward:

- by name: ``make_reward("aesthetic", clip_path=..., head_path=...)``; names
  come from ``@register_reward(name)`` on a class (or function) in an
  imported module, or from a third-party package's entry point in the group
  ``rldiff.rewards``::

      # the plugin's pyproject.toml
      [project.entry-points."rldiff.rewards"]
      my_reward = "my_package.rewards:MyReward"

  Entry points are looked up (and imported) only when a name is not
  registered; a registered name wins over an entry point of the same name.
- from a Hydra config: ``instantiate_reward({"_target_": "rewards.AestheticReward", ...})``.
- directly: ``rewards.AestheticReward(...)``.

Whatever builds it, the result must satisfy :class:`rldiff.protocols.Reward`.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Mapping

from rldiff.protocols import Reward

__all__ = ["ENTRY_POINT_GROUP", "register_reward", "make_reward", "available_rewards", "get_reward_factory", "instantiate_reward"]

ENTRY_POINT_GROUP = "rldiff.rewards"
_REGISTRY: dict[str, Callable[..., Reward]] = {}


def register_reward(name: str) -> Callable[[Callable[..., Reward]], Callable[..., Reward]]:
    """Class/function decorator: make ``name`` build this reward in :func:`make_reward`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_reward: name must be a non-empty str, got {name!r}")

    def decorate(factory: Callable[..., Reward]) -> Callable[..., Reward]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"register_reward: name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def _entry_points() -> list[metadata.EntryPoint]:
    """The installed entry points of group ``rldiff.rewards``."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def available_rewards() -> list[str]:
    """Registered names and installed plugin names, sorted."""
    return sorted(set(_REGISTRY) | {ep.name for ep in _entry_points()})


def get_reward_factory(name: str) -> Callable[..., Reward]:
    """The class/function registered (or installed as a plugin) under ``name``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for ep in _entry_points():
        if ep.name != name:
            continue
        try:
            factory = ep.load()
        except Exception as err:  # a plugin that fails to import must say which one
            raise ImportError(f"reward plugin {name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}) failed to load: {err}") from err
        if not callable(factory):
            raise TypeError(f"reward plugin {name!r} (entry point {ep.value!r}) is not callable: {type(factory).__name__}")
        _REGISTRY[name] = factory
        return factory
    raise KeyError(f"unknown reward {name!r}; available: {available_rewards()}")


def _checked(reward: Any, origin: str) -> Reward:
    if not isinstance(reward, Reward):
        raise TypeError(f"{origin} built a {type(reward).__name__}, which lacks the Reward methods score, reset and step")
    return reward


def make_reward(name: str, **kwargs: Any) -> Reward:
    """Build the reward registered under ``name`` with keyword arguments."""
    return _checked(get_reward_factory(name)(**kwargs), f"make_reward({name!r})")


def instantiate_reward(config: Mapping[str, Any] | Any, **overrides: Any) -> Reward:
    """Build a reward from a Hydra/OmegaConf node with ``_target_`` (nested ``_target_``s included)."""
    from hydra.utils import instantiate

    if "_target_" not in config:
        raise KeyError(f"instantiate_reward: config needs a '_target_' key, got keys {sorted(config)}")
    return _checked(instantiate(config, **overrides), f"instantiate_reward(_target_={config['_target_']!r})")
