"""Synthetic data sources: the Sprites-Drag world (training videos, controls, held-out set)."""

from rldiff.data.scene import SpriteScene
from rldiff.data.sprites import SpritesDrag, render, scene_control

__all__ = ["SpriteScene", "SpritesDrag", "render", "scene_control"]
