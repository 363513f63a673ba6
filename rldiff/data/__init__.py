"""Synthetic data sources."""

from rldiff.data.sprites import SpriteScene, SpritesDrag, render

__all__ = ["SpriteScene", "SpritesDrag", "render"]
