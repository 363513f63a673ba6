"""The batched AR denoising MDP shared by the single and the vector env.

:class:`World` fixes the shapes (from the codec and one probe control) and the
sigma schedule; :class:`Episodes` advances ``R`` episodes in lockstep. Both env
faces are thin wrappers around them, so "one vector env" and "R single envs"
run the very same code.

State of an episode at ``(m, n)`` (ARCHITECTURE.md, "The MDP"): the snapshot
``X_{m,n} = (x_{<m,N}, x_{m,n}, x_{>m,0})`` ``[R, F, C, H, W]``, kept in one
tensor updated in place: the action ``x_{m,n+1}`` overwrites slot ``m``. When
``n + 1 = N`` frame ``m`` is finished: it is decoded by the codec's streaming
decoder and scored by the streaming reward; the latent frame's reward is the
reward of its last pixel frame.

Blocks (``frames_per_block = P > 1``, the public Self-Forcing / LongLive /
CausVid students): a decision moves a whole block of ``P`` frames, whose
frames share the step; ``m`` is the block's first frame, the action is
``[R, P, C, H, W]``, and when the block finishes its frames are decoded and
scored one by one (the block's reward is the sum of its frames' rewards).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from torch import Tensor

from rldiff.flow import shifted_sigmas
from rldiff.types import Control

from envs.parts import resolve_part

__all__ = ["World", "Episodes", "EnvFace", "FrameResult", "check_action", "check_options", "check_seed", "seeded_generator", "row_generators", "draw_noise"]

_PROBE_SEED = 0


@dataclass
class World:
    """Parts and shapes of one env configuration.

    Attributes:
        control_source, codec, reward: the resolved parts.
        num_frames: F latent frames; num_steps: N steps per frame (per block).
        sigmas: ``[N+1]`` float32 noise levels, 1 ... 0.
        latent_shape: ``(C, H, W)``.
        num_pixel_frames: T = 1 + (F - 1) * temporal_factor.
        num_tracks: K; image_size: ``(H_px, W_px)``.
        device: where the snapshot, codec and reward run.
        frames_per_block: P latent frames per decision (1: AR-Drag; 3: the public causal students).
    """

    control_source: object
    codec: object
    reward: object
    num_frames: int
    num_steps: int
    sigmas: Tensor
    latent_shape: tuple[int, int, int]
    num_pixel_frames: int
    num_tracks: int
    image_size: tuple[int, int]
    device: torch.device
    frames_per_block: int = 1
    closed: bool = False

    def close(self) -> None:
        """Release the parts: each one's own ``close()`` (if it has one) runs, then the world drops them."""
        if self.closed:
            return
        for part in (self.reward, self.codec, self.control_source):
            close = getattr(part, "close", None)
            if callable(close):
                close()
        self.reward = self.codec = self.control_source = None
        self.closed = True

    @staticmethod
    def build(
        control_source, codec, reward, num_steps: int, shift: float, device: str | torch.device, frames_per_block: int = 1
    ) -> "World":
        """Resolve the parts and read the shapes off one probe control (seed 0) and the codec."""
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        control_source = resolve_part(control_source, "control_source")
        codec = resolve_part(codec, "codec")
        reward = resolve_part(reward, "reward")
        probe = control_source.sample(1, torch.Generator().manual_seed(_PROBE_SEED))
        if not isinstance(probe, Control):
            raise TypeError(f"control_source.sample must return an rldiff.types.Control, got {type(probe).__name__}")
        t, tf, sf = probe.num_frames, int(codec.temporal_factor), int(codec.spatial_factor)
        if (t - 1) % tf:
            raise ValueError(f"control_source gives T={t} pixel frames; the codec needs T = 1 + (F-1)*{tf}")
        num_frames = 1 + (t - 1) // tf
        if not isinstance(frames_per_block, int) or frames_per_block < 1 or num_frames % frames_per_block:
            raise ValueError(f"frames_per_block must be a positive int dividing F = {num_frames} latent frames, got {frames_per_block!r}")
        hp, wp = probe.image_size
        if hp % sf or wp % sf:
            raise ValueError(f"control_source gives {hp}x{wp} images, not divisible by the codec's spatial_factor {sf}")
        return World(
            control_source=control_source,
            codec=codec,
            reward=reward,
            num_frames=num_frames,
            num_steps=num_steps,
            sigmas=shifted_sigmas(num_steps, shift),
            latent_shape=(int(codec.latent_channels), hp // sf, wp // sf),
            num_pixel_frames=t,
            num_tracks=probe.trajectory.shape[2],
            image_size=(hp, wp),
            device=torch.device(device),
            frames_per_block=frames_per_block,
        )

    @property
    def snapshot_shape(self) -> tuple[int, ...]:
        return (self.num_frames, *self.latent_shape)

    @property
    def num_blocks(self) -> int:
        """F / P decisions' blocks per episode."""
        return self.num_frames // self.frames_per_block

    @property
    def action_shape(self) -> tuple[int, ...]:
        """One action: ``(C, H, W)``, or ``(P, C, H, W)`` for blocks of ``P > 1`` frames."""
        return self.latent_shape if self.frames_per_block == 1 else (self.frames_per_block, *self.latent_shape)

    def check_control(self, control: Control, rows: int, name: str = "options['control']") -> Control:
        """Raise unless ``control`` is a ``Control`` of ``rows`` rows with this world's shapes; move it to the device."""
        if not isinstance(control, Control):
            raise TypeError(f"{name} must be an rldiff.types.Control, got {type(control).__name__}")
        expected = (rows, self.num_pixel_frames, self.num_tracks, 2)
        if tuple(control.trajectory.shape) != expected:
            raise ValueError(f"{name}.trajectory must be [B, T, K, 2] = {expected}, got {tuple(control.trajectory.shape)}")
        if control.image_size != self.image_size:
            raise ValueError(f"{name}.reference must be {self.image_size} pixels, got {control.image_size}")
        return control.to(self.device)


def check_action(action, shape: tuple[int, ...], name: str = "action") -> Tensor:
    """The action as a float32 tensor of ``shape``, detached; numpy arrays are viewed as tensors. Raises on bad input.

    The env stores actions as data: an action that requires grad is detached,
    so no autograd graph reaches the snapshot or the observations.
    """
    if isinstance(action, np.ndarray):
        action = torch.from_numpy(action)
    if not isinstance(action, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array) of shape {shape}, got {type(action).__name__}")
    if action.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 (the next latent), got dtype {action.dtype}")
    if tuple(action.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (the next latent of the current frame), got {tuple(action.shape)}")
    lo, hi = torch.aminmax(action)  # NaN propagates to both, an inf shows in one: exact and ~8x cheaper than isfinite().all()
    if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
        raise ValueError(f"{name} contains NaN or inf")
    return action.detach()


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int; raises (Gymnasium's ``error.Error``, as its ``np_random``) unless it is a non-negative int.

    Gymnasium's rule: any non-negative Python int, however large. numpy
    integers are accepted too (seed lists may come as arrays); bools, floats
    and strings are not (``1.5`` is not truncated, ``"3"`` not parsed).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise gymnasium.error.Error(f"{name} must be a non-negative python int (Gymnasium's seeding rule), got {seed!r} of type {type(seed).__name__}")
    if seed < 0:
        raise gymnasium.error.Error(f"{name} must be a non-negative python int (Gymnasium's seeding rule), got {seed!r}")
    return int(seed)


# torch's CPU generator state (ATen's CPUGeneratorImplState, 5056 bytes): uint64 initial seed, int32 left,
# int32 seeded, uint64 next, then the 624 Mersenne Twister words, each stored as a uint64, from byte 24.
_STATE_BYTES, _WORDS_AT, _MT_WORDS = 5056, 24, 624
_layout_checked = False


def _check_state_layout() -> None:
    """Raise unless torch's generator state has the layout above (checked once against numpy's MT19937 seeding)."""
    global _layout_checked
    if _layout_checked:
        return
    state = torch.Generator().manual_seed(5489).get_state().numpy()
    words = state[_WORDS_AT : _WORDS_AT + 8 * _MT_WORDS].view(np.uint64) if state.size == _STATE_BYTES else None
    if words is None or not np.array_equal(words, np.random.RandomState(5489).get_state()[1]):
        raise RuntimeError(
            f"seeded_generator: torch {torch.__version__}'s CPU generator state is not the expected {_STATE_BYTES}-byte "
            "Mersenne Twister layout, so seeds >= 2**32 cannot be supported; use seeds below 2**32"
        )
    _layout_checked = True


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for a Gymnasium seed (any non-negative int); distinct seeds give distinct streams.

    Seeds below 2**32 are ``manual_seed(seed)``. torch's Mersenne Twister keeps
    only the low 32 bits of a seed (``manual_seed(2**32)`` equals
    ``manual_seed(0)``), so a larger seed instead fills the generator's
    624-word state from ``numpy.random.SeedSequence(seed)`` (the seed hashing of
    Gymnasium's ``np_random``, which takes ints of any size).
    """
    seed = check_seed(seed)
    generator = torch.Generator()
    if seed < 2**32:
        return generator.manual_seed(seed)
    _check_state_layout()
    state = generator.get_state().numpy().copy()  # [5056] uint8
    words = np.random.SeedSequence(seed).generate_state(_MT_WORDS, dtype=np.uint32).astype(np.uint64)
    state[_WORDS_AT : _WORDS_AT + 8 * _MT_WORDS] = words.view(np.uint8)
    state[0:8] = np.array([seed % 2**64], dtype=np.uint64).view(np.uint8)  # initial_seed(): the seed mod 2**64
    state[8:16] = np.array([1, 1], dtype=np.int32).view(np.uint8)  # left = 1 (regenerate on first draw), seeded
    state[16:24] = 0  # next
    generator.set_state(torch.from_numpy(state))
    return generator


def row_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per row, row ``r`` seeded with ``seeds[r]`` (:func:`seeded_generator`)."""
    return [seeded_generator(s) for s in seeds]


def draw_noise(generators: list[torch.Generator], shape: tuple[int, ...]) -> Tensor:
    """Initial noise ``[R, F, C, H, W]``: row ``r`` is ``randn(shape)`` from ``generators[r]`` (CPU, float32)."""
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])  # [R, F, C, H, W]


@dataclass
class FrameResult:
    """A finished latent frame (or block): first ``frame`` index m, ``reward [R]``, components ``{name: [R]}``.

    For a block of ``P`` frames ``reward``/``terms`` are sums over its frames and
    ``frame_rewards [R, P]``/``frame_terms {name: [R, P]}`` hold each frame's.
    """

    frame: int
    reward: Tensor
    terms: dict[str, Tensor]
    frame_rewards: Tensor | None = None
    frame_terms: dict[str, Tensor] | None = None


class Episodes:
    """``R`` episodes of one :class:`World` advanced in lockstep (no RNG inside: transitions are deterministic)."""

    def __init__(self, world: World):
        self.world = world
        self.snapshot: Tensor | None = None
        self.control: Control | None = None
        self.frame = 0
        self.step_index = 0
        self.done = True
        self._decoder = None

    @property
    def num_rows(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.shape[0]

    def close(self) -> None:
        """Drop the episodes' state (snapshot, control, the codec's streaming decoder)."""
        self.snapshot, self.control, self._decoder, self.done = None, None, None, True

    def start(self, control: Control, noise: Tensor) -> None:
        """Begin ``R`` episodes from initial noise ``[R, F, C, H, W]`` (owned from now on) under ``control`` (R rows)."""
        w = self.world
        if tuple(noise.shape[1:]) != w.snapshot_shape or noise.shape[0] != control.batch_size:
            raise ValueError(f"noise must be [R={control.batch_size}, *{w.snapshot_shape}], got {tuple(noise.shape)}")
        self.snapshot = noise.to(device=w.device, dtype=torch.float32)  # [R, F, C, H, W]
        self.control = control
        self.frame, self.step_index, self.done = 0, 0, False
        self._decoder = w.codec.stream_decoder()
        w.reward.reset(control)

    def advance(self, action: Tensor) -> FrameResult | None:
        """Write the action ``[R, C, H, W]`` (block: ``[R, P, C, H, W]``) as ``x_{m,n+1}``; returns the result when the frame (block) completes."""
        if self.done:
            raise RuntimeError("the episode is over (terminated after the last frame): call reset() first")
        w, m, p = self.world, self.frame, self.world.frames_per_block
        if p == 1:
            self.snapshot[:, m].copy_(action)
        else:
            self.snapshot[:, m : m + p].copy_(action)
        self.step_index += 1
        if self.step_index < w.num_steps:
            return None
        result = self._finish_frame(m) if p == 1 else self._finish_block(m, p)
        if m + p < w.num_frames:
            self.frame, self.step_index = m + p, 0
        else:
            self.done = True  # terminal state: (F-1, N)
        return result

    def _finish_frame(self, m: int) -> FrameResult:
        r = self.num_rows
        pixels = self._decoder.decode_next(self.snapshot[:, m])  # [R, t, 3, H_px, W_px]
        out = self.world.reward.step(pixels)
        if not isinstance(out, dict) or "reward" not in out:
            raise TypeError(f"reward.step must return a dict with key 'reward', got {type(out).__name__}")
        terms = {}
        for key, value in out.items():
            if value.dim() != 2 or value.shape[0] != r:
                raise ValueError(f"reward.step()[{key!r}] must be [R={r}, t], got {tuple(value.shape)}")
            terms[key] = value[:, -1].float()  # [R]: the reward of the last pixel frame of latent frame m
        reward = terms.pop("reward")
        return FrameResult(frame=m, reward=reward, terms=terms, frame_rewards=reward[:, None], frame_terms={k: v[:, None] for k, v in terms.items()})

    def _finish_block(self, m: int, p: int) -> FrameResult:
        frames = [self._finish_frame(m + i) for i in range(p)]  # decoded and scored in order
        frame_rewards = torch.stack([f.reward for f in frames], dim=1)  # [R, P]
        frame_terms = {k: torch.stack([f.terms[k] for f in frames], dim=1) for k in frames[0].terms}  # {name: [R, P]}
        return FrameResult(
            frame=m,
            reward=frame_rewards.sum(dim=1),
            terms={k: v.sum(dim=1) for k, v in frame_terms.items()},
            frame_rewards=frame_rewards,
            frame_terms=frame_terms,
        )


def check_options(options: dict | None, accepted: set[str]) -> dict:
    """A copy of reset ``options`` (a dict or None); raises on another type and on keys outside ``accepted``."""
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"reset: options must be a dict (or None), got {type(options).__name__} {options!r:.200}")
    options = dict(options or {})
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"reset: unknown options {sorted(unknown)}; accepted: {sorted(accepted)}")
    return options


class EnvFace:
    """What the single and the vector env share: ``world``, ``_episodes`` and views of them."""

    world: World
    _episodes: Episodes
    _owns_world: bool = True  # False for views that share another env's world (``resized``)

    def close(self, **kwargs) -> None:
        """End the episodes and release the codec and the reward (unless the world is shared with the env it came from)."""
        self._episodes.close()
        if self._owns_world:
            self.world.close()
        super().close(**kwargs)

    def _check_open(self) -> None:
        if self.world.closed:
            raise RuntimeError(f"{type(self).__name__} is closed (close() released its codec and reward): make a new env")

    @property
    def num_frames(self) -> int:
        """F latent frames per episode."""
        return self.world.num_frames

    @property
    def num_steps(self) -> int:
        """N decisions per frame (per block)."""
        return self.world.num_steps

    @property
    def frames_per_block(self) -> int:
        """P latent frames moved by one decision (1 unless the env was built with blocks)."""
        return self.world.frames_per_block

    @property
    def control(self) -> Control | None:
        """The current episodes' controls (one row per episode, ``[B, G]`` order in the vector env)."""
        return self._episodes.control
