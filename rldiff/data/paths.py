"""Smooth sprite trajectories of the Sprites-Drag world (numpy, one scene at a time).

A trajectory is a path family (line, arc, wave, Bezier curve) traversed with a
speed profile (steady, ease-in-out, accelerating, decelerating): the path is a
function of arc parameter ``s in [0, 1]`` and the profile maps normalized time
``u = t / (T - 1)`` to ``s``. Paths are then turned, fitted into the frame (uniform
shrink, never growth) and placed where they keep away from the sprites
already placed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PATHS", "SPEEDS", "candidate_placements", "choose_placements", "draw_path", "speed_profile"]

PATHS = ("a straight line", "an arc", "a wave", "a curve")
SPEEDS = ("steadily", "smoothly", "faster and faster", "slower and slower")


def speed_profile(speed: int, u: np.ndarray) -> np.ndarray:
    """Arc parameter ``s(u)`` of speed kind ``speed`` (index into SPEEDS); monotone, s(0)=0, s(1)=1."""
    if speed == 0:
        return u  # steady
    if speed == 1:
        return u * u * (3.0 - 2.0 * u)  # ease in and out (smoothstep)
    if speed == 2:
        return u * u  # accelerate
    if speed == 3:
        return 1.0 - (1.0 - u) ** 2  # decelerate
    raise ValueError(f"speed must index SPEEDS (0..{len(SPEEDS) - 1}), got {speed}")


def _line(rng: np.random.Generator, s: np.ndarray, length: float) -> np.ndarray:
    heading = rng.uniform(0.0, 2 * math.pi)
    return s[:, None] * length * np.array([math.cos(heading), math.sin(heading)])  # [T, 2]


def _arc(rng: np.random.Generator, s: np.ndarray, length: float) -> np.ndarray:
    sweep = rng.uniform(0.4, 0.9) * math.pi * rng.choice([-1.0, 1.0])
    start = rng.uniform(0.0, 2 * math.pi)
    rho = length / abs(sweep)  # arc length = rho * |sweep|
    ang = start + sweep * s
    return rho * np.stack([np.cos(ang) - math.cos(start), np.sin(ang) - math.sin(start)], axis=-1)  # [T, 2]


def _wave(rng: np.random.Generator, s: np.ndarray, length: float) -> np.ndarray:
    heading = rng.uniform(0.0, 2 * math.pi)
    amplitude, cycles = rng.uniform(0.1, 0.2) * length, rng.uniform(0.5, 1.0)
    along = np.array([math.cos(heading), math.sin(heading)])
    across = np.array([-along[1], along[0]])
    return s[:, None] * length * along + amplitude * np.sin(2 * math.pi * cycles * s)[:, None] * across  # [T, 2]


def _curve(rng: np.random.Generator, s: np.ndarray, length: float) -> np.ndarray:
    heading = rng.uniform(0.0, 2 * math.pi)
    along = np.array([math.cos(heading), math.sin(heading)])
    across = np.array([-along[1], along[0]])
    p0, p3 = np.zeros(2), length * along
    # inner control points ahead of p0 and behind p3: the curve bends but never doubles back (no cusp)
    p1 = p0 + length * (rng.uniform(0.2, 0.5) * along + rng.uniform(-0.5, 0.5) * across)
    p2 = p3 + length * (-rng.uniform(0.2, 0.5) * along + rng.uniform(-0.5, 0.5) * across)
    w = np.stack([(1 - s) ** 3, 3 * s * (1 - s) ** 2, 3 * s * s * (1 - s), s**3], axis=-1)  # [T, 4] cubic Bernstein
    return w @ np.stack([p0, p1, p2, p3])  # [T, 2]


_FAMILIES = (_line, _arc, _wave, _curve)


def draw_path(rng: np.random.Generator, num_frames: int, path: int, speed: int) -> np.ndarray:
    """A trajectory of family ``path`` with speed ``speed``, relative to its start: ``[T, 2]``.

    The path is scaled to an arc length of 0.15-0.4 of the frame, so at 32 px
    and 8 frames a sprite moves about 0.7-1.8 px per frame on average (up to
    twice that at the fastest instant of an accelerating or decelerating path).
    """
    u = np.linspace(0.0, 1.0, num_frames)  # [T]
    dense = np.linspace(0.0, 1.0, 65)  # [65] to measure the arc length
    length = rng.uniform(0.15, 0.4)
    pts = _FAMILIES[path](rng, np.concatenate([speed_profile(speed, u), dense]), 1.0)  # [T + 65, 2]
    arc = float(np.linalg.norm(np.diff(pts[num_frames:], axis=0), axis=-1).sum())
    return pts[:num_frames] * (length / max(arc, 1e-9))


def candidate_placements(rng: np.random.Generator, rel: np.ndarray, radius: float, margin: float = 0.02, candidates: int = 32) -> np.ndarray:
    """``candidates`` placements of ``rel [T, 2]`` inside the frame: ``[N, T, 2]`` absolute centres.

    Each turns the path by a random angle (which keeps its family, smoothness
    and speed), shrinks it uniformly if it does not fit so that the whole
    sprite (``radius``) stays ``margin`` inside the frame, and shifts it by a
    random offset within the room left.
    """
    lo_box, hi_box = radius + margin, 1.0 - radius - margin
    room = hi_box - lo_box
    turn = rng.uniform(0.0, 2 * math.pi, size=candidates)  # [N]
    rot = np.stack([np.stack([np.cos(turn), -np.sin(turn)], -1), np.stack([np.sin(turn), np.cos(turn)], -1)], -2)  # [N, 2, 2]
    pts = np.einsum("nij,tj->nti", rot, rel)  # [N, T, 2]
    lo, hi = pts.min(axis=1), pts.max(axis=1)  # [N, 2]
    scale = np.minimum(1.0, room / np.maximum((hi - lo).max(axis=1), 1e-9))  # [N]
    pts = (pts - lo[:, None]) * scale[:, None, None]  # [N, T, 2], bbox starts at 0
    slack = room - (hi - lo) * scale[:, None]  # [N, 2] >= 0
    return pts + (lo_box + rng.uniform(0.0, 1.0, size=(candidates, 2)) * slack)[:, None]  # [N, T, 2]


def _gap(a: np.ndarray, ra: float, b: np.ndarray, rb: float) -> np.ndarray:
    """Smallest edge-to-edge distance over frames between sprites on centres ``a [..., T, 2]`` and ``b``."""
    return (np.linalg.norm(a - b, axis=-1) - ra - rb).min(axis=-1)


def choose_placements(options: list[np.ndarray], radii: list[float]) -> list[np.ndarray]:
    """Pick one placement ``[T, 2]`` per sprite from its ``options [N, T, 2]`` so sprites keep apart.

    The first two sprites are chosen jointly (all N^2 pairs), the rest
    greedily; the criterion is the smallest edge-to-edge gap over frames.
    The first option is taken for a lone sprite, so its placement stays uniform.
    """
    if len(options) == 1:
        return [options[0][0]]
    pair = _gap(options[0][:, None], radii[0], options[1][None], radii[1])  # [N, N]
    i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
    chosen = [options[0][i], options[1][j]]
    for opts, r in zip(options[2:], radii[2:]):
        gaps = np.min([_gap(opts, r, c, rc) for c, rc in zip(chosen, radii)], axis=0)  # [N]
        chosen.append(opts[int(np.argmax(gaps))])
    return chosen
