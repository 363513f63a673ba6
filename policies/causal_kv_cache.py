"""Rolling key/value cache of a block-causal video transformer.

Visibility rule (shared by the cache path and the parallel path), counted in
frames: a block of ``P`` frames ``s .. e = s + P - 1`` attends to itself (both
ways) and to the clean (committed) frames ``j < s`` with ``j > e - window``
(so ``window`` frames in all with the block's own) or ``j < sink`` (pinned sink
frames, not counted in ``window``). With ``P = 1`` (AR-Drag) frame ``m`` sees
itself and the last ``window - 1`` frames.

Self-Forcing and LongLive count the sinks inside their ``local_attn_size``:
rldiff ``(window, sink) = (local_attn_size - sink_size, sink_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["is_visible", "block_sees", "CrossKV", "KVCache"]


def is_visible(query_frame: int, key_frame: int, window: int, sink: int) -> bool:
    """Whether a clean frame ``key_frame`` is in the attention context of frame ``query_frame`` (``key < query``)."""
    return block_sees(query_frame, 1, key_frame, window, sink)


def block_sees(block_start: int, block_size: int, key_frame: int, window: int, sink: int) -> bool:
    """Whether the block of frames ``block_start .. block_start + block_size - 1`` sees the clean ``key_frame`` (``key < start``)."""
    last = block_start + block_size - 1
    return key_frame < block_start and (key_frame > last - window or key_frame < sink)


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
    frame, in the order of ``frames``. ``next_frame`` is the first frame of the
    block the cache is ready for (every frame before it was committed); blocks
    are ``frames_per_block`` frames and are committed whole, evicted frame by
    frame. Build with ``CausalWan.new_cache(cond)``; fill with
    ``CausalWan.commit`` / ``CausalWan.commit_block``.
    """

    window: int
    sink: int
    batch_size: int
    cross: list[CrossKV]
    keys: list[list[Tensor]] = field(default_factory=list)
    values: list[list[Tensor]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    next_frame: int = 0
    frames_per_block: int = 1

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
        """Stage the committed block's ``[B, P * L, heads, d]`` key/value of ``layer`` (visible after :meth:`advance`).

        The block is split into its ``P = frames_per_block`` frames (frame-major tokens).
        """
        if len(self.keys[layer]) != len(self.frames):
            raise RuntimeError(f"KVCache.store: layer {layer} already holds the block being committed")
        p = self.frames_per_block
        if key.shape[1] % p or value.shape != key.shape:
            raise ValueError(f"KVCache.store: key/value must be [B, P * L, heads, d] with P = {p}, got {tuple(key.shape)}, {tuple(value.shape)}")
        self.keys[layer].extend(key.chunk(p, dim=1))  # P x [B, L, heads, d]
        self.values[layer].extend(value.chunk(p, dim=1))

    def advance(self) -> None:
        """Finish committing the block at ``next_frame`` and evict frames the next block no longer sees."""
        p = self.frames_per_block
        if any(len(k) != len(self.frames) + p for k in self.keys):
            raise RuntimeError("KVCache.advance: every layer must store the committed block first")
        self.frames.extend(range(self.next_frame, self.next_frame + p))
        self.next_frame += p
        keep = [i for i, j in enumerate(self.frames) if block_sees(self.next_frame, p, j, self.window, self.sink)]
        if len(keep) != len(self.frames):
            self.frames = [self.frames[i] for i in keep]
            self.keys = [[ks[i] for i in keep] for ks in self.keys]
            self.values = [[vs[i] for i in keep] for vs in self.values]

    def num_bytes(self) -> int:
        """Bytes held by the self-attention keys/values (for memory checks)."""
        return sum(t.numel() * t.element_size() for layer in self.keys + self.values for t in layer)
