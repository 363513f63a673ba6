"""``CausalWan``: a diffusers ``WanTransformer3DModel`` run block-causally, block by block.

An attention block is ``P = frames_per_block`` latent frames (AR-Drag: 1;
Self-Forcing, LongLive, CausVid: 3) of ``L = (H / p_h) * (W / p_w)`` tokens
each; the frames of a block share a timestep and attend to each other both
ways. A block attends to itself and to the clean frames in its window (see
:mod:`policies.causal_kv_cache`), counted in frames: ``window`` frames with its
own, plus the first ``sink`` frames. Keys are stored after RoPE at absolute
frame positions; text (and CLIP image) cross-attention keys/values are
computed once per video by :meth:`CausalWan.new_cache`.

Two paths give the same numbers:

- cache path (acting, streaming, Self-Rollout): ``new_cache(cond)``, then per
  block ``forward_block`` for each denoising step (reads the cache) and
  ``commit_block`` of the finished clean block (a pass at t = 0 that writes its
  K/V); with ``P = 1`` also ``forward_frame`` / ``commit`` on ``[B, C, H, W]``;
- parallel path (log-prob recompute, training): ``forward_parallel(clean,
  noisy, noisy_frames, noisy_timestep, cond)``, one pass over the clean
  history blocks and any number of noisy blocks.

Input per frame: the noisy latent ``[B, C, H, W]`` concatenated on channels
with ``cond["frames"][:, m]`` (``[B, C_cond, H, W]``: mask | reference |
trajectory) before the patch embedding. Loading and saving live in
:mod:`policies.causal_wan_io`.
"""

from __future__ import annotations

import types

import torch
from tensordict import TensorDict
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from policies.causal_attention import block_cross_kv, block_forward, sdpa
from policies.causal_kv_cache import KVCache, block_sees
from policies.causal_rope import RopeTable, frame_rope

__all__ = ["CausalWan"]


class CausalWan(nn.Module):
    """Block-causal, KV-cached wrapper of a diffusers ``WanTransformer3DModel`` (its weights, not a fork).

    Args:
        transformer: the diffusers model; ``patch_size[0]`` must be 1 (one latent frame per patch).
        extra_in_channels: trailing input channels added to the pretrained ones (trajectory latents).
        window: frames a block attends to, its own ``frames_per_block`` included, sinks not
            (AR-Drag: 7); must be ``>= frames_per_block``.
        sink: first frames that stay in every window, on top of ``window`` (0 = none).
        frames_per_block: ``P`` latent frames per attention block (AR-Drag: 1; the public
            Self-Forcing / LongLive / CausVid students: 3).
        checkpointing: recompute each transformer block's activations in backward (parallel
            path with gradients only; same numbers, less memory).

    Each transformer block gets two methods, ``causal_forward(h, mod, cos, sin, attend, cross)``
    and ``causal_cross_kv(text, image)``: every use of a block's weights goes through them, so
    FSDP2 can make each block its own unit (``register_fsdp_forward_method``).

    Window convention: Self-Forcing and LongLive count the sink frames inside
    their ``local_attn_size``; here they are not: rldiff ``(window, sink)`` =
    their ``(local_attn_size - sink_size, sink_size)`` (LongLive's (12, 3) is
    ``window=9, sink=3``); their ``local_attn_size = -1`` (global) is any
    ``window`` at least the video length.
    """

    def __init__(self, transformer, extra_in_channels: int = 0, window: int = 7, sink: int = 0, frames_per_block: int = 1, checkpointing: bool = False) -> None:
        super().__init__()
        cfg = transformer.config
        if tuple(cfg.patch_size)[0] != 1:
            raise ValueError(f"CausalWan needs a temporal patch size of 1 (one latent frame per patch), got patch_size {tuple(cfg.patch_size)}")
        if int(frames_per_block) < 1:
            raise ValueError(f"frames_per_block must be >= 1, got {frames_per_block}")
        if int(window) < int(frames_per_block):
            raise ValueError(f"window must be >= {frames_per_block} = frames_per_block (frames attended, the current block included), got {window}")
        if int(sink) < 0:
            raise ValueError(f"sink must be >= 0, got {sink}")
        cond_channels = cfg.in_channels - cfg.out_channels
        if not 0 <= int(extra_in_channels) <= cond_channels:
            raise ValueError(
                f"extra_in_channels must lie in [0, in_channels - out_channels = {cond_channels}], got {extra_in_channels}"
            )
        self.transformer = transformer
        self.window, self.sink, self.extra_in_channels = int(window), int(sink), int(extra_in_channels)
        self.frames_per_block, self.checkpointing = int(frames_per_block), bool(checkpointing)
        self._rope = RopeTable(transformer.rope)
        for block in transformer.blocks:  # bound methods: a deepcopy rebinds them to the copy's blocks
            block.causal_forward = types.MethodType(block_forward, block)
            block.causal_cross_kv = types.MethodType(block_cross_kv, block)

    # -- shapes -----------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        """C: channels of the noisy latent and of the predicted velocity."""
        return int(self.transformer.config.out_channels)

    @property
    def cond_channels(self) -> int:
        """C_cond: channels of ``cond["frames"]`` (mask | reference | trajectory)."""
        return int(self.transformer.config.in_channels - self.transformer.config.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.patch_embedding.weight.device

    def _check_latent(self, x: Tensor, name: str, cond: TensorDict, dim: int) -> None:
        """Raise unless ``x`` is ``[B, C, H, W]`` (dim 4) or ``[B, K, C, H, W]`` (dim 5) matching ``cond``."""
        frames = cond["frames"]
        layout = "[B, C, H, W]" if dim == 4 else "[B, K, C, H, W]"
        ok = (
            isinstance(x, Tensor)
            and x.dim() == dim
            and x.shape[0] == frames.shape[0]
            and x.shape[-3] == self.latent_channels
            and tuple(x.shape[-2:]) == tuple(frames.shape[-2:])
        )
        if not ok:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must be {layout} with B = {frames.shape[0]}, C = {self.latent_channels} (latent channels), "
                f"H, W = {tuple(frames.shape[-2:])} (from cond['frames']), got {got}"
            )

    def _check_cond(self, cond: TensorDict) -> None:
        if "frames" not in cond.keys() or "text" not in cond.keys():
            raise KeyError(f"cond must hold 'text' [B, L, D_text] and 'frames' [B, F, C_cond, H, W], got keys {list(cond.keys())}")
        frames, text = cond["frames"], cond["text"]
        if frames.dim() != 5 or frames.shape[2] != self.cond_channels:
            raise ValueError(
                f"cond['frames'] must be [B, F, C_cond = {self.cond_channels}, H, W] (in_channels - out_channels), got {tuple(frames.shape)}"
            )
        _, ph, pw = self.transformer.config.patch_size
        if frames.shape[-2] % ph or frames.shape[-1] % pw:
            raise ValueError(f"latent H, W = {tuple(frames.shape[-2:])} must be divisible by the patch size ({ph}, {pw})")
        if text.dim() != 3 or text.shape[0] != frames.shape[0] or text.shape[2] != self.transformer.config.text_dim:
            raise ValueError(f"cond['text'] must be [B = {frames.shape[0]}, L, D_text = {self.transformer.config.text_dim}], got {tuple(text.shape)}")

    def _check_frame(self, frame_index: int, cond: TensorDict, size: int = 1) -> int:
        """Raise unless frames ``frame_index .. frame_index + size - 1`` exist in ``cond`` and the RoPE table."""
        m = int(frame_index)
        num_frames = cond["frames"].shape[1]
        limit = min(num_frames, self._rope.max_positions) - size + 1
        if not 0 <= m < limit:
            what = "frame_index" if size == 1 else f"the first frame of a block of {size} frames"
            raise IndexError(
                f"{what} must lie in [0, {limit}) "
                f"(cond has F = {num_frames} frames, rope_max_seq_len {self._rope.max_positions}), got {m}"
            )
        return m

    def _timesteps(self, timestep: float | Tensor, shape: tuple[int, int]) -> Tensor:
        t = torch.as_tensor(timestep, dtype=torch.float32, device=self.device)
        if t.dim() == 0:
            t = t.expand(shape)
        elif t.dim() == 1 and shape[1] == 1 and t.shape[0] == shape[0]:
            t = t[:, None]
        if tuple(t.shape) != shape:
            raise ValueError(f"timestep must be a scalar or [B] per frame ([B, K] for K blocks) = {shape}, got {tuple(t.shape)}")
        return t  # [B, K]

    # -- shared pieces ----------------------------------------------------------
    def _embed(self, x: Tensor, cond_frames: Tensor) -> Tensor:
        """Noisy latents ``[B, K, C, H, W]`` + cond channels ``[B, K, C_cond, H, W]`` -> tokens ``[B, K, L, D]``."""
        inp = torch.cat([x, cond_frames.to(x.dtype)], dim=2).to(self.dtype)  # [B, K, C_in, H, W]
        z = self.transformer.patch_embedding(inp.transpose(1, 2))  # [B, D, K, h, w]
        return z.flatten(3).permute(0, 2, 3, 1).contiguous()  # [B, K, L, D]

    def _time(self, timestep: Tensor) -> tuple[Tensor, Tensor]:
        """Per-block ``timestep [B, K]`` -> ``temb [B, K, D]``, ``mod [B, K, 6, D]`` (sinusoids in float32)."""
        ce = self.transformer.condition_embedder
        b, k = timestep.shape
        t = ce.timesteps_proj(timestep.flatten().float())  # [B*K, freq_dim]
        t = t.to(next(ce.time_embedder.parameters()).dtype)
        temb = ce.time_embedder(t).to(self.dtype)  # [B*K, D]
        mod = ce.time_proj(ce.act_fn(temb))  # [B*K, 6D]
        return temb.view(b, k, -1), mod.view(b, k, 6, -1)

    def _head(self, h: Tensor, temb: Tensor, height: int, width: int) -> Tensor:
        """Tokens ``[B, K, L, D]`` -> velocity ``[B, K, C, H, W]`` (output norm, projection, unpatchify)."""
        tr = self.transformer
        _, ph, pw = tr.config.patch_size
        b, k = h.shape[:2]
        shift, scale = (tr.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)  # [B, K, 1, D]
        h = (tr.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
        out = tr.proj_out(h).view(b, k, height // ph, width // pw, ph, pw, -1)  # [B, K, h, w, ph, pw, C]
        return out.permute(0, 1, 6, 2, 4, 3, 5).reshape(b, k, -1, height, width)  # [B, K, C, H, W]

    def _grid(self, cond: TensorDict) -> tuple[int, int]:
        _, ph, pw = self.transformer.config.patch_size
        return cond["frames"].shape[-2] // ph, cond["frames"].shape[-1] // pw

    # -- cache path -------------------------------------------------------------
    def new_cache(self, cond: TensorDict) -> KVCache:
        """An empty cache for one batch of videos; computes the text (and image) cross-attention K/V once."""
        self._check_cond(cond)
        ce = self.transformer.condition_embedder
        text = ce.text_embedder(cond["text"].to(self.device, self.dtype))  # [B, L_txt, D]
        image = None
        if "image" in cond.keys():
            if ce.image_embedder is None:
                raise ValueError("cond has 'image' embeddings but the model has no image projection (config image_dim is None)")
            image = ce.image_embedder(cond["image"].to(self.device, self.dtype)).to(self.dtype)  # [B, L_img, D]
        cross = [block.causal_cross_kv(text, image) for block in self.transformer.blocks]
        return KVCache(window=self.window, sink=self.sink, batch_size=cond["frames"].shape[0], cross=cross, frames_per_block=self.frames_per_block)

    def _check_cache(self, cache: KVCache, m: int, cond: TensorDict) -> None:
        if not isinstance(cache, KVCache) or cache.num_layers != len(self.transformer.blocks):
            raise TypeError("cache must be a KVCache from this model's new_cache(cond)")
        if cache.batch_size != cond["frames"].shape[0]:
            raise ValueError(f"cache holds B = {cache.batch_size} videos, cond has {cond['frames'].shape[0]}")
        if m != cache.next_frame:
            raise IndexError(f"frame {m} does not follow the cache: frames 0..{cache.next_frame - 1} are committed, so the next frame is {cache.next_frame} (the first of the next block)")

    def _block_pass(self, x: Tensor, block_index: int, timestep: float | Tensor, cond: TensorDict, cache: KVCache, write: bool) -> Tensor:
        """Cache pass of block ``block_index``: ``x [B, P, C, H, W]`` -> velocity ``[B, P, C, H, W]`` (or commit)."""
        p = self.frames_per_block
        self._check_cond(cond)
        self._check_latent(x, "x" if not write else "clean", cond, dim=5)
        if x.shape[1] != p:
            raise ValueError(f"{'clean' if write else 'x'} must hold one block of P = frames_per_block = {p} frames on dim 1, got {tuple(x.shape)}")
        m = self._check_frame(int(block_index) * p, cond, size=p)  # first frame of the block
        self._check_cache(cache, m, cond)
        b = x.shape[0]
        height, width = self._grid(cond)
        h = self._embed(x.to(self.device), cond["frames"][:, m : m + p].to(self.device))  # [B, P, L, D]
        temb, mod = self._time(self._timesteps(timestep, (b, 1)).expand(b, p))  # one timestep per block
        cos, sin = frame_rope(self._rope, torch.arange(m, m + p, device=self.device), height, width)
        for layer, block in enumerate(self.transformer.blocks):
            ctx_k, ctx_v = cache.context(layer)

            def attend(q: Tensor, k: Tensor, v: Tensor, layer=layer, ctx_k=ctx_k, ctx_v=ctx_v) -> Tensor:
                out = sdpa(q, torch.cat([*ctx_k, k], dim=1), torch.cat([*ctx_v, v], dim=1))  # [B, L, heads*d]
                if write:  # after attending: store() appends to the lists ctx_k / ctx_v
                    cache.store(layer, k.detach(), v.detach())
                return out

            h = block.causal_forward(h, mod, cos, sin, attend, cache.cross[layer])
        if write:
            cache.advance()
            return h
        return self._head(h, temb, x.shape[-2], x.shape[-1])  # [B, P, C, H, W]

    def forward_block(self, x: Tensor, block_index: int, timestep: float | Tensor, cond: TensorDict, cache: KVCache) -> Tensor:
        """Velocity ``[B, P, C, H, W]`` of block ``block_index`` (frames ``P * block_index ..``) at ``x [B, P, C, H, W]``.

        ``timestep`` (scalar or ``[B]``, 1000*sigma) is shared by the block's
        frames. Reads the cache (every earlier block must be committed), never
        writes it. Runs with gradients when they are enabled (the cached
        history is detached): this is the Self-Rollout step.
        """
        return self._block_pass(x, block_index, timestep, cond, cache, write=False)

    @torch.no_grad()
    def commit_block(self, clean: Tensor, block_index: int, cond: TensorDict, cache: KVCache) -> None:
        """Write the clean block ``clean [B, P, C, H, W]`` into the cache (a pass at t = 0), evicting frames out of the window."""
        self._block_pass(clean, block_index, 0.0, cond, cache, write=True)

    def _one_frame_blocks(self, name: str) -> None:
        if self.frames_per_block != 1:
            raise ValueError(
                f"{name} runs one-frame blocks, but this model generates blocks of frames_per_block = {self.frames_per_block} "
                f"frames: use {'forward_block' if name == 'forward_frame' else 'commit_block'} on [B, P, C, H, W]"
            )

    def forward_frame(self, x: Tensor, frame_index: int, timestep: float | Tensor, cond: TensorDict, cache: KVCache) -> Tensor:
        """Velocity ``[B, C, H, W]`` of frame ``frame_index`` at ``x [B, C, H, W]`` (``frames_per_block = 1`` only).

        Same as :meth:`forward_block` on a one-frame block.
        """
        self._one_frame_blocks("forward_frame")
        self._check_cond(cond)
        self._check_latent(x, "x", cond, dim=4)
        return self._block_pass(x[:, None], frame_index, timestep, cond, cache, write=False)[:, 0]  # [B, C, H, W]

    @torch.no_grad()
    def commit(self, clean: Tensor, frame_index: int, cond: TensorDict, cache: KVCache) -> None:
        """Write the clean frame ``clean [B, C, H, W]`` into the cache (``frames_per_block = 1`` only)."""
        self._one_frame_blocks("commit")
        self._check_cond(cond)
        self._check_latent(clean, "clean", cond, dim=4)
        self._block_pass(clean[:, None], frame_index, 0.0, cond, cache, write=True)

    # -- parallel path ----------------------------------------------------------
    def forward_parallel(self, clean: Tensor, noisy: Tensor, noisy_frames: Tensor, noisy_timestep: Tensor, cond: TensorDict) -> Tensor:
        """Velocities of noisy blocks in one block-causal pass, equal to the cache path's.

        Args:
            clean: ``[B, F_c, C, H, W]`` clean history, frames ``0 .. F_c - 1`` (run at t = 0;
                each block attends to itself and to the clean frames in its window before it);
                ``F_c`` is a multiple of ``P = frames_per_block``.
            noisy: ``[B, K, C, H, W]`` noisy latents, given frame by frame: entry ``k`` is at
                frame ``noisy_frames[k]``. With ``P > 1`` every run of ``P`` entries
                ``k = P*g .. P*g + P - 1`` is one noisy block: consecutive frames starting at a
                multiple of ``P``, with one timestep.
            noisy_frames: ``[K]`` long, frame of each entry (shared by the batch); a block starting
                at frame ``s`` needs ``s <= F_c``.
            noisy_timestep: ``[B, K]`` (or ``[K]``) timesteps ``1000 * sigma``.
            cond: the conditioning TensorDict (``F >= max(noisy_frames) + 1`` frames).

        A noisy block starting at frame ``s`` sees itself and the clean frames ``j < s`` in its
        window, exactly what ``forward_block`` sees after the blocks before it were committed.
        Returns ``[B, K, C, H, W]``.
        """
        self._check_cond(cond)
        p = self.frames_per_block
        b, num_frames = cond["frames"].shape[:2]
        self._check_latent(clean, "clean", cond, dim=5)
        self._check_latent(noisy, "noisy", cond, dim=5)
        frames = torch.as_tensor(noisy_frames, dtype=torch.long).cpu()
        k_noisy, f_clean = noisy.shape[1], clean.shape[1]
        if frames.shape != (k_noisy,):
            raise ValueError(f"noisy_frames must be [K = {k_noisy}] (one frame per noisy entry, shared by the batch), got {tuple(frames.shape)}")
        if f_clean > num_frames:
            raise ValueError(f"clean has F_c = {f_clean} frames, cond only F = {num_frames}")
        if f_clean % p:
            raise ValueError(f"clean must hold whole blocks: F_c = {f_clean} is not a multiple of frames_per_block = {p}")
        if k_noisy % p:
            raise ValueError(f"noisy must hold whole blocks of frames_per_block = {p} frames, got K = {k_noisy} entries")
        for m in frames.tolist():
            self._check_frame(m, cond)
        ts = torch.as_tensor(noisy_timestep, dtype=torch.float32, device=self.device)
        if ts.dim() == 1:
            ts = ts.expand(b, k_noisy)
        ts = self._timesteps(ts, (b, k_noisy))
        starts = frames[::p]  # [K / P] first frame of each noisy block
        for g, s in enumerate(starts.tolist()):
            block = frames[g * p : (g + 1) * p]
            if s % p or not torch.equal(block, torch.arange(s, s + p)):
                raise ValueError(f"noisy entries {g * p}..{(g + 1) * p - 1} must be one block: frames {s}..{s + p - 1} with {s} a multiple of {p}, got {block.tolist()}")
            if s > f_clean:
                raise ValueError(f"noisy block at frame {s} needs clean history frames 0..{s - 1}, but clean has F_c = {f_clean}")
            if p > 1 and not bool((ts[:, g * p : (g + 1) * p] == ts[:, g * p : g * p + 1]).all()):
                raise ValueError(f"the frames of noisy block {g} (frames {s}..{s + p - 1}) must share one timestep, got {ts[:, g * p : (g + 1) * p].tolist()}")
        # attention groups: (query entries, key entries) per block; entries are clean frames 0..F_c-1 then the noisy ones
        groups = []
        for s in range(0, f_clean, p):
            own = list(range(s, s + p))
            groups.append((own, [j for j in range(s) if block_sees(s, p, j, self.window, self.sink)] + own))
        for g, s in enumerate(starts.tolist()):
            own = list(range(f_clean + g * p, f_clean + (g + 1) * p))
            groups.append((own, [j for j in range(min(s, f_clean)) if block_sees(s, p, j, self.window, self.sink)] + own))
        positions = torch.cat([torch.arange(f_clean), frames])  # [F_c + K]

        height, width = self._grid(cond)
        cond_frames = cond["frames"].to(self.device)
        x = torch.cat([clean.to(self.device, noisy.dtype), noisy.to(self.device)], dim=1)  # [B, F_c + K, C, H, W]
        c = torch.cat([cond_frames[:, :f_clean], cond_frames[:, frames.to(self.device)]], dim=1)  # [B, F_c + K, C_cond, H, W]
        h = self._embed(x, c)  # [B, F_c + K, L, D]
        num_entries, tokens = h.shape[1], h.shape[2]
        t_all = torch.cat([torch.zeros(b, f_clean, device=self.device), ts], dim=1)  # [B, F_c + K]
        temb, mod = self._time(t_all)
        cos, sin = frame_rope(self._rope, positions.to(self.device), height, width)

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            q, k, v = (t.unflatten(1, (num_entries, tokens)) for t in (q, k, v))  # [B, F_c + K, L, heads, d]
            outs = [sdpa(q[:, qs].flatten(1, 2), k[:, ks].flatten(1, 2), v[:, ks].flatten(1, 2)) for qs, ks in groups]
            return torch.cat(outs, dim=1)  # [B, (F_c + K) * L, heads*d]

        text = self.transformer.condition_embedder.text_embedder(cond["text"].to(self.device, self.dtype))
        image = None
        if "image" in cond.keys():
            image = self.transformer.condition_embedder.image_embedder(cond["image"].to(self.device, self.dtype)).to(self.dtype)
        def run(block, h: Tensor) -> Tensor:  # [B, F_c + K, L, D] -> same; cross K/V recomputed with the block
            return block.causal_forward(h, mod, cos, sin, attend, block.causal_cross_kv(text, image))

        for block in self.transformer.blocks:
            h = checkpoint(run, block, h, use_reentrant=False) if self.checkpointing and torch.is_grad_enabled() else run(block, h)
        return self._head(h[:, f_clean:], temb[:, f_clean:], clean.shape[-2], clean.shape[-1])  # [B, K, C, H, W]

    def forward(self, clean: Tensor, noisy: Tensor, noisy_frames: Tensor, noisy_timestep: Tensor, cond: TensorDict) -> Tensor:
        """Same as :meth:`forward_parallel` (so DDP/FSDP wrappers hook the training pass)."""
        return self.forward_parallel(clean, noisy, noisy_frames, noisy_timestep, cond)

    # -- loading ----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        local_dir,
        extra_in_channels: int | None = None,
        window: int | None = None,
        sink: int | None = None,
        torch_dtype: torch.dtype | None = None,
        frames_per_block: int | None = None,
    ) -> "CausalWan":
        """Load any diffusers-format Wan transformer directory (see :func:`policies.causal_wan_io.load_causal_wan`).

        A directory written by ``python -m policies.convert_checkpoint`` (a public causal
        student) carries its window, sink and frames per block in ``causal_config.json``.
        """
        from policies.causal_wan_io import load_causal_wan

        return load_causal_wan(
            cls, local_dir, extra_in_channels=extra_in_channels, window=window, sink=sink, torch_dtype=torch_dtype, frames_per_block=frames_per_block
        )

    def save_pretrained(self, save_dir) -> None:
        """Write config.json + safetensors (diffusers layout) and ``causal_config.json``, atomically per file."""
        from policies.causal_wan_io import save_causal_wan

        save_causal_wan(self, save_dir)

    @classmethod
    def tiny(cls, **kwargs) -> "CausalWan":
        """A tiny random model for tests and the CPU world (see :func:`policies.causal_wan_io.tiny_causal_wan`)."""
        from policies.causal_wan_io import tiny_causal_wan

        return tiny_causal_wan(cls, **kwargs)
