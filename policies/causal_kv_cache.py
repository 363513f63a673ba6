"""Rolling key/value cache of a block-causal video transformer.

Visibility rule (shared by the cache path and the parallel path): the block of
frame ``m`` attends to itself and to the clean (committed) frames ``j < m``
with ``j > m - window`` (the last ``window - 1`` frames, so ``window`` frames
in all with the current one) or ``j < sink`` (pinned sink frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["is_visible", "CrossKV", "KVCache"]


def is_visible(query_frame: int, key_frame: int, window: int, sink: int) -> bool:
    """Whether a clean frame ``key_frame`` is in the attention context of frame ``query_frame`` (``key < query``)."""
    return key_frame < query_frame and (key_frame > query_frame - window or key_frame < sink)


@dataclass
class CrossKV:
    """Cross-attention keys/values of one layer, computed once per video: ``[B, L_txt, heads, d]`` (image: ``[B, L_img, heads, d]``)."""

    text_k: Tensor
    text_v: Tensor
    image_k: Tensor | None = None
    image_v: Tensor | None = None


@dataclass
class KVCache:
    """Per-layer self-attention keys (after RoPE at absolute positions) and values of committed frames.

    ``keys[l]`` / ``values[l]`` hold one ``[B, L, heads, d]`` tensor per kept
    frame, in the order of ``frames``. ``next_frame`` is the frame the cache is
    ready for (every frame before it was committed). Build with
    ``CausalWan.new_cache(cond)``; fill with ``CausalWan.commit``.
    """

    window: int
    sink: int
    batch_size: int
    cross: list[CrossKV]
    keys: list[list[Tensor]] = field(default_factory=list)
    values: list[list[Tensor]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    next_frame: int = 0

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [[] for _ in self.cross]
            self.values = [[] for _ in self.cross]

    @property
    def num_layers(self) -> int:
        return len(self.cross)

    def context(self, layer: int) -> tuple[list[Tensor], list[Tensor]]:
        """Cached ``(keys, values)`` of ``layer``: lists of ``[B, L, heads, d]``, one per kept frame."""
        return self.keys[layer], self.values[layer]

    def store(self, layer: int, key: Tensor, value: Tensor) -> None:
        """Stage the committed frame's ``[B, L, heads, d]`` key/value of ``layer`` (visible after :meth:`advance`)."""
        if len(self.keys[layer]) != len(self.frames):
            raise RuntimeError(f"KVCache.store: layer {layer} already holds the frame being committed")
        self.keys[layer].append(key)
        self.values[layer].append(value)

    def advance(self) -> None:
        """Finish committing frame ``next_frame`` and evict frames the next frame no longer sees."""
        if any(len(k) != len(self.frames) + 1 for k in self.keys):
            raise RuntimeError("KVCache.advance: every layer must store the committed frame first")
        self.frames.append(self.next_frame)
        self.next_frame += 1
        keep = [i for i, j in enumerate(self.frames) if is_visible(self.next_frame, j, self.window, self.sink)]
        if len(keep) != len(self.frames):
            self.frames = [self.frames[i] for i in keep]
            self.keys = [[ks[i] for i in keep] for ks in self.keys]
            self.values = [[vs[i] for i in keep] for vs in self.values]

    def num_bytes(self) -> int:
        """Bytes held by the self-attention keys/values (for memory checks)."""
        return sum(t.numel() * t.element_size() for layer in self.keys + self.values for t in layer)
