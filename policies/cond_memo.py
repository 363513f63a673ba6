"""``ConditioningMemo``: each control row's conditioning encoded once, then reused.

A GRPO iteration reads the conditioning of the same ``B`` controls many times:
``G`` rollouts of each act on it, every minibatch recomputes on it, the KL
reference recomputes on it again. The conditioning of a row is a pure function
of the row's content, ``num_frames`` and the seed (``encode_rows`` encodes each
row with a fresh generator), so it is memoized by a fingerprint of exactly
those: a collected batch costs ``B`` encodings, not ``B * G * (1 + epochs * 2)``.

The encoders must be frozen (they are in ``FlowPolicy``: not submodules, no
gradients). The memo keeps the ``max_rows`` most recently used rows.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from tensordict import TensorDict
from torch import Tensor

__all__ = ["ConditioningMemo", "row_fingerprint"]


def _feed(h, t: Tensor | None) -> None:
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def row_fingerprint(control, num_frames: int, seed: int) -> str:
    """A digest of a one-row ``Control`` (trajectory, visibility, reference, prompt, embeddings), ``num_frames`` and ``seed``."""
    h = hashlib.sha1(f"{int(num_frames)}|{int(seed)}|{control.prompt[0]}".encode())
    for t in (control.trajectory, control.visibility, control.reference, control.text_embeds, control.image_embeds):
        _feed(h, t)
    return h.hexdigest()


class ConditioningMemo:
    """Least-recently-used memo of per-row conditionings.

    Args:
        max_rows: rows kept (0: no memo, every call encodes). One Wan 1.3B row at 480x832,
            21 frames is ~20 MB of conditioning, so keep it near the controls per iteration.
    """

    def __init__(self, max_rows: int = 32) -> None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"ConditioningMemo: max_rows must be an int >= 0, got {max_rows!r}")
        self.max_rows = max_rows
        self._rows: OrderedDict[str, TensorDict] = OrderedDict()
        self.encoded = 0  # rows encoded so far (misses)
        self.reused = 0  # rows served from the memo (hits)

    def clear(self) -> None:
        self._rows.clear()

    def rows(self, control, num_frames: int, seed: int, encode_row) -> TensorDict:
        """Conditioning ``[B]`` of ``control``'s rows; ``encode_row(one_row_control) -> TensorDict [1]`` runs on a miss."""
        out = []
        for i in range(control.batch_size):
            row = control.index([i])
            key = row_fingerprint(row, num_frames, seed) if self.max_rows else None
            if key is not None and key in self._rows:
                self._rows.move_to_end(key)
                self.reused += 1
                out.append(self._rows[key])
                continue
            cond = encode_row(row)  # [1]
            self.encoded += 1
            if key is not None:
                self._rows[key] = cond
                while len(self._rows) > self.max_rows:
                    self._rows.popitem(last=False)
            out.append(cond)
        return torch.cat(out, dim=0)  # [B]
