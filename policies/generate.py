"""Streaming generation: decoded pixel frames as each latent frame finishes.

``generate`` runs the causal model's cache path with the deterministic ODE
sampler (``N`` steps per latent frame at ``shifted_sigmas(N, shift)``),
commits each finished frame, decodes it with the codec's streaming decoder and
yields it. ``trajectory_fn`` may change the control between frames (a drag
that evolves while the video plays): the conditioning of the frames not yet
generated is rebuilt from the new control; finished frames keep theirs.

A model with ``frames_per_block = P > 1`` (a public Self-Forcing / LongLive /
CausVid student) denoises a block of ``P`` frames at a time; its frames are
decoded and yielded one by one when the block is done, and ``trajectory_fn``
is called at block starts only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from rldiff.flow import ode_step, shifted_sigmas
from rldiff.types import Control

__all__ = ["GeneratedFrame", "generate"]


@dataclass
class GeneratedFrame:
    """One finished latent frame.

    Attributes:
        index: latent frame ``m``.
        latent: ``[B, C, H, W]`` clean latent ``x_{m,N}``.
        frames: ``[B, t, 3, H_px, W_px]`` decoded pixel frames in [0, 1] (``t`` = 1 for m = 0,
            else the codec's ``temporal_factor``).
        latency_s: seconds from the start of generation until these frames were decoded
            (for ``index == 0``: the first-frame latency).
        frame_s: seconds spent on this frame alone (denoising, decoding, commit excluded).
    """

    index: int
    latent: Tensor
    frames: Tensor
    latency_s: float
    frame_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    policy_or_model,
    encoder,
    codec,
    control: Control,
    num_frames: int,
    num_steps: int = 3,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    trajectory_fn: Callable[[int, Control], Control | None] | None = None,
) -> Iterator[GeneratedFrame]:
    """Generate ``num_frames`` latent frames for ``control``, yielding a :class:`GeneratedFrame` per frame.

    Args:
        policy_or_model: a ``FlowPolicy`` (its ``model`` and ``cond_seed`` are used) or a causal model
            with ``new_cache``, ``forward_frame`` and ``commit`` (``CausalWan``).
        encoder: ``encode(control, num_frames, generator) -> Conditioning``.
        codec: ``rldiff.protocols.Codec`` (its ``stream_decoder()`` decodes frame by frame).
        control: ``B`` controls.
        num_frames: ``F`` latent frames.
        num_steps: ``N`` ODE steps per frame; ``shift``: timestep shift of the sigmas.
        generator: draws the initial noise of every frame (at the start, like the env's reset)
            and the seed of the conditioning's noise placeholders.
        trajectory_fn: called as ``trajectory_fn(m, control)`` before frame (block start) ``m > 0``;
            returning a new ``Control`` re-encodes the conditioning of frames ``m ..`` from it, ``None`` keeps it.
    """
    model = getattr(policy_or_model, "model", policy_or_model)
    p = int(getattr(model, "frames_per_block", 1))
    if p > 1:
        yield from _generate_blocks(model, encoder, codec, control, num_frames, num_steps, shift, generator, trajectory_fn, p)
        return
    device, sigmas, start = next(model.parameters()).device, shifted_sigmas(num_steps, shift).tolist(), time.perf_counter()
    cond_seed, cond, noise, cache, decoder = _start(model, encoder, codec, control, num_frames, generator, device)
    for m in range(num_frames):
        frame_start = time.perf_counter()
        with torch.no_grad():
            if m > 0 and trajectory_fn is not None:
                control = _follow(trajectory_fn, m, control, encoder, num_frames, cond_seed, cond, device)
            x = noise[:, m]  # [B, C, H, W]
            for n in range(num_steps):
                v = model.forward_frame(x, m, 1000.0 * sigmas[n], cond, cache).float()
                x = ode_step(x.float(), v, sigmas[n], sigmas[n + 1])
            frames = decoder.decode_next(x)  # [B, t, 3, H_px, W_px]
            _sync(device)
            now = time.perf_counter()
            out = GeneratedFrame(index=m, latent=x, frames=frames, latency_s=now - start, frame_s=now - frame_start)
        yield out  # outside no_grad: the caller's grad mode is untouched while suspended
        if m + 1 < num_frames:
            with torch.no_grad():
                model.commit(x, m, cond, cache)


def _start(model, encoder, codec, control: Control, num_frames: int, generator, device):
    """The draws every generation starts with: the conditioning's seed, then the initial noise of every frame."""
    with torch.no_grad():
        cond_seed = int(torch.randint(0, 2**62, (), generator=generator))
        cond = encoder.encode(control, num_frames, generator=torch.Generator().manual_seed(cond_seed)).to(device)
        b, _, _, height, width = cond["frames"].shape
        noise = torch.randn(b, num_frames, model.latent_channels, height, width, generator=generator).to(device)  # [B, F, C, H, W]
        return cond_seed, cond, noise, model.new_cache(cond), codec.stream_decoder()


def _follow(trajectory_fn, m: int, control: Control, encoder, num_frames: int, cond_seed: int, cond, device) -> Control:
    """Ask ``trajectory_fn`` for a new control before frame ``m``; a new one re-encodes ``cond``'s frames ``m ..`` in place."""
    new_control = trajectory_fn(m, control)
    if new_control is None:
        return control
    fresh = encoder.encode(new_control, num_frames, generator=torch.Generator().manual_seed(cond_seed)).to(device)
    cond["frames"] = torch.cat([cond["frames"][:, :m], fresh["frames"][:, m:]], dim=1)  # [B, F, C_cond, H, W]
    return new_control


def _generate_blocks(model, encoder, codec, control, num_frames, num_steps, shift, generator, trajectory_fn, p) -> Iterator[GeneratedFrame]:
    """:func:`generate` for blocks of ``p`` frames (same draws: the noise of every frame at the start, then the cond seed)."""
    if num_frames % p:
        raise ValueError(f"num_frames = {num_frames} must be a multiple of the model's frames_per_block = {p}")
    device, sigmas, start = next(model.parameters()).device, shifted_sigmas(num_steps, shift).tolist(), time.perf_counter()
    cond_seed, cond, noise, cache, decoder = _start(model, encoder, codec, control, num_frames, generator, device)
    for blk in range(num_frames // p):
        m = blk * p
        block_start = time.perf_counter()
        with torch.no_grad():
            if m > 0 and trajectory_fn is not None:
                control = _follow(trajectory_fn, m, control, encoder, num_frames, cond_seed, cond, device)
            x = noise[:, m : m + p]  # [B, P, C, H, W]
            for n in range(num_steps):
                v = model.forward_block(x, blk, 1000.0 * sigmas[n], cond, cache).float()
                x = ode_step(x.float(), v, sigmas[n], sigmas[n + 1])
        for i in range(p):
            with torch.no_grad():
                frames = decoder.decode_next(x[:, i])  # [B, t, 3, H_px, W_px]
                _sync(device)
                now = time.perf_counter()
                out = GeneratedFrame(index=m + i, latent=x[:, i], frames=frames, latency_s=now - start, frame_s=now - block_start)
            yield out
            block_start = time.perf_counter()
        if m + p < num_frames:
            with torch.no_grad():
                model.commit_block(x, blk, cond, cache)
