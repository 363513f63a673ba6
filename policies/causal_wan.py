"""``CausalWan``: a diffusers ``WanTransformer3DModel`` run block-causally, frame by frame.

Each latent frame is one attention block of ``L = (H / p_h) * (W / p_w)``
tokens. Frame ``m`` attends to itself and to the clean frames in its window
(see :mod:`policies.causal_kv_cache`): the last ``window - 1`` committed frames and
the first ``sink`` frames. Keys are stored after RoPE at absolute frame
positions; text (and CLIP image) cross-attention keys/values are computed once
per video by :meth:`CausalWan.new_cache`.

Two paths give the same numbers:

- cache path (acting, streaming, Self-Rollout): ``new_cache(cond)``, then per
  frame ``forward_frame`` for each denoising step (reads the cache) and
  ``commit`` of the finished clean frame (a pass at t = 0 that writes its K/V);
- parallel path (log-prob recompute, training): ``forward_parallel(clean,
  noisy, noisy_frames, noisy_timestep, cond)``, one pass over the clean
  history blocks and any number of noisy blocks.

Input per frame: the noisy latent ``[B, C, H, W]`` concatenated on channels
with ``cond["frames"][:, m]`` (``[B, C_cond, H, W]``: mask | reference |
trajectory) before the patch embedding. Loading and saving live in
:mod:`policies.causal_wan_io`.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import Tensor, nn

from policies.causal_attention import block_forward, cross_kv, sdpa
from policies.causal_kv_cache import KVCache, is_visible
from policies.causal_rope import RopeTable, frame_rope

__all__ = ["CausalWan"]


class CausalWan(nn.Module):
    """Block-causal, KV-cached wrapper of a diffusers ``WanTransformer3DModel`` (its weights, not a fork).

    Args:
        transformer: the diffusers model; ``patch_size[0]`` must be 1 (one latent frame per block).
        extra_in_channels: trailing input channels added to the pretrained ones (trajectory latents).
        window: frames each frame attends to, itself included (AR-Drag: 7).
        sink: first frames that stay in every window (0 = none).
    """

    def __init__(self, transformer, extra_in_channels: int = 0, window: int = 7, sink: int = 0) -> None:
        super().__init__()
        cfg = transformer.config
        if tuple(cfg.patch_size)[0] != 1:
            raise ValueError(f"CausalWan needs a temporal patch size of 1 (one latent frame per block), got patch_size {tuple(cfg.patch_size)}")
        if int(window) < 1:
            raise ValueError(f"window must be >= 1 (frames attended, the current one included), got {window}")
        if int(sink) < 0:
            raise ValueError(f"sink must be >= 0, got {sink}")
        cond_channels = cfg.in_channels - cfg.out_channels
        if not 0 <= int(extra_in_channels) <= cond_channels:
            raise ValueError(
                f"extra_in_channels must lie in [0, in_channels - out_channels = {cond_channels}], got {extra_in_channels}"
            )
        self.transformer = transformer
        self.window, self.sink, self.extra_in_channels = int(window), int(sink), int(extra_in_channels)
        self._rope = RopeTable(transformer.rope)

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

    def _check_frame(self, frame_index: int, cond: TensorDict) -> int:
        m = int(frame_index)
        num_frames = cond["frames"].shape[1]
        if not 0 <= m < min(num_frames, self._rope.max_positions):
            raise IndexError(
                f"frame_index must lie in [0, {min(num_frames, self._rope.max_positions)}) "
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
        cross = [cross_kv(block.attn2, text, image) for block in self.transformer.blocks]
        return KVCache(window=self.window, sink=self.sink, batch_size=cond["frames"].shape[0], cross=cross)

    def _check_cache(self, cache: KVCache, m: int, cond: TensorDict) -> None:
        if not isinstance(cache, KVCache) or cache.num_layers != len(self.transformer.blocks):
            raise TypeError("cache must be a KVCache from this model's new_cache(cond)")
        if cache.batch_size != cond["frames"].shape[0]:
            raise ValueError(f"cache holds B = {cache.batch_size} videos, cond has {cond['frames'].shape[0]}")
        if m != cache.next_frame:
            raise IndexError(f"frame_index {m} does not follow the cache: frames 0..{cache.next_frame - 1} are committed, so the next frame is {cache.next_frame}")

    def _frame_pass(self, x: Tensor, m: int, timestep: float | Tensor, cond: TensorDict, cache: KVCache, write: bool) -> Tensor:
        self._check_cond(cond)
        m = self._check_frame(m, cond)
        self._check_latent(x, "x" if not write else "clean", cond, dim=4)
        self._check_cache(cache, m, cond)
        b = x.shape[0]
        height, width = self._grid(cond)
        h = self._embed(x[:, None].to(self.device), cond["frames"][:, m : m + 1].to(self.device))  # [B, 1, L, D]
        temb, mod = self._time(self._timesteps(timestep, (b, 1)))
        cos, sin = frame_rope(self._rope, torch.tensor([m], device=self.device), height, width)
        for layer, block in enumerate(self.transformer.blocks):
            ctx_k, ctx_v = cache.context(layer)

            def attend(q: Tensor, k: Tensor, v: Tensor, layer=layer, ctx_k=ctx_k, ctx_v=ctx_v) -> Tensor:
                out = sdpa(q, torch.cat([*ctx_k, k], dim=1), torch.cat([*ctx_v, v], dim=1))  # [B, L, heads*d]
                if write:  # after attending: store() appends to the lists ctx_k / ctx_v
                    cache.store(layer, k.detach(), v.detach())
                return out

            h = block_forward(block, h, mod, cos, sin, attend, cache.cross[layer])
        if write:
            cache.advance()
            return h
        return self._head(h, temb, x.shape[-2], x.shape[-1])[:, 0]  # [B, C, H, W]

    def forward_frame(self, x: Tensor, frame_index: int, timestep: float | Tensor, cond: TensorDict, cache: KVCache) -> Tensor:
        """Velocity ``[B, C, H, W]`` of frame ``frame_index`` at ``x [B, C, H, W]`` and ``timestep`` (scalar or ``[B]``, 1000*sigma).

        Reads the cache (frames ``0 .. frame_index - 1`` must be committed),
        never writes it. Runs with gradients when they are enabled (the cached
        history is detached): this is the Self-Rollout step.
        """
        return self._frame_pass(x, frame_index, timestep, cond, cache, write=False)

    @torch.no_grad()
    def commit(self, clean: Tensor, frame_index: int, cond: TensorDict, cache: KVCache) -> None:
        """Write the clean frame ``clean [B, C, H, W]`` into the cache (a pass at t = 0), evicting frames out of the window."""
        self._frame_pass(clean, frame_index, 0.0, cond, cache, write=True)

    # -- parallel path ----------------------------------------------------------
    def forward_parallel(self, clean: Tensor, noisy: Tensor, noisy_frames: Tensor, noisy_timestep: Tensor, cond: TensorDict) -> Tensor:
        """Velocities of ``K`` noisy blocks in one block-causal pass, equal to the cache path's.

        Args:
            clean: ``[B, F_c, C, H, W]`` clean history, frames ``0 .. F_c - 1`` (run at t = 0;
                each attends to itself and to the clean frames in its window before it).
            noisy: ``[B, K, C, H, W]`` noisy latents; block ``k`` is at frame ``noisy_frames[k]``.
            noisy_frames: ``[K]`` long, frame of each noisy block (shared by the batch), each ``<= F_c``.
            noisy_timestep: ``[B, K]`` (or ``[K]``) timesteps ``1000 * sigma``.
            cond: the conditioning TensorDict (``F >= max(noisy_frames) + 1`` frames).

        Noisy block ``k`` at frame ``m`` sees itself and the clean frames ``j < m`` in its window,
        exactly what ``forward_frame`` sees after frames ``0 .. m - 1`` were committed.
        Returns ``[B, K, C, H, W]``.
        """
        self._check_cond(cond)
        b, num_frames = cond["frames"].shape[:2]
        self._check_latent(clean, "clean", cond, dim=5)
        self._check_latent(noisy, "noisy", cond, dim=5)
        frames = torch.as_tensor(noisy_frames, dtype=torch.long).cpu()
        k_noisy, f_clean = noisy.shape[1], clean.shape[1]
        if frames.shape != (k_noisy,):
            raise ValueError(f"noisy_frames must be [K = {k_noisy}] (one frame per noisy block, shared by the batch), got {tuple(frames.shape)}")
        for m in frames.tolist():
            self._check_frame(m, cond)
            if m > f_clean:
                raise ValueError(f"noisy block at frame {m} needs clean history frames 0..{m - 1}, but clean has F_c = {f_clean}")
        if f_clean > num_frames:
            raise ValueError(f"clean has F_c = {f_clean} frames, cond only F = {num_frames}")
        ts = torch.as_tensor(noisy_timestep, dtype=torch.float32, device=self.device)
        if ts.dim() == 1:
            ts = ts.expand(b, k_noisy)
        ts = self._timesteps(ts, (b, k_noisy))
        positions = torch.cat([torch.arange(f_clean), frames])  # [F_c + K]
        contexts = [[j for j in range(f_clean) if is_visible(int(p), j, self.window, self.sink)] + [i] for i, p in enumerate(positions.tolist())]

        height, width = self._grid(cond)
        cond_frames = cond["frames"].to(self.device)
        x = torch.cat([clean.to(self.device, noisy.dtype), noisy.to(self.device)], dim=1)  # [B, F_c + K, C, H, W]
        c = torch.cat([cond_frames[:, :f_clean], cond_frames[:, frames.to(self.device)]], dim=1)  # [B, F_c + K, C_cond, H, W]
        h = self._embed(x, c)  # [B, F_c + K, L, D]
        num_blocks, tokens = h.shape[1], h.shape[2]
        t_all = torch.cat([torch.zeros(b, f_clean, device=self.device), ts], dim=1)  # [B, F_c + K]
        temb, mod = self._time(t_all)
        cos, sin = frame_rope(self._rope, positions.to(self.device), height, width)

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            q, k, v = (t.unflatten(1, (num_blocks, tokens)) for t in (q, k, v))  # [B, F_c + K, L, heads, d]
            outs = [sdpa(q[:, i], k[:, ctx].flatten(1, 2), v[:, ctx].flatten(1, 2)) for i, ctx in enumerate(contexts)]
            return torch.cat(outs, dim=1)  # [B, (F_c + K) * L, heads*d]

        text = self.transformer.condition_embedder.text_embedder(cond["text"].to(self.device, self.dtype))
        image = None
        if "image" in cond.keys():
            image = self.transformer.condition_embedder.image_embedder(cond["image"].to(self.device, self.dtype)).to(self.dtype)
        for block in self.transformer.blocks:
            h = block_forward(block, h, mod, cos, sin, attend, cross_kv(block.attn2, text, image))
        return self._head(h[:, f_clean:], temb[:, f_clean:], clean.shape[-2], clean.shape[-1])  # [B, K, C, H, W]

    def forward(self, clean: Tensor, noisy: Tensor, noisy_frames: Tensor, noisy_timestep: Tensor, cond: TensorDict) -> Tensor:
        """Same as :meth:`forward_parallel` (so DDP/FSDP wrappers hook the training pass)."""
        return self.forward_parallel(clean, noisy, noisy_frames, noisy_timestep, cond)

    # -- loading ----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, local_dir, extra_in_channels: int | None = None, window: int | None = None, sink: int | None = None, torch_dtype: torch.dtype | None = None) -> "CausalWan":
        """Load any diffusers-format Wan transformer directory (see :func:`policies.causal_wan_io.load_causal_wan`)."""
        from policies.causal_wan_io import load_causal_wan

        return load_causal_wan(cls, local_dir, extra_in_channels=extra_in_channels, window=window, sink=sink, torch_dtype=torch_dtype)

    def save_pretrained(self, save_dir) -> None:
        """Write config.json + safetensors (diffusers layout) and ``causal_config.json``, atomically per file."""
        from policies.causal_wan_io import save_causal_wan

        save_causal_wan(self, save_dir)

    @classmethod
    def tiny(cls, **kwargs) -> "CausalWan":
        """A tiny random model for tests and the CPU world (see :func:`policies.causal_wan_io.tiny_causal_wan`)."""
        from policies.causal_wan_io import tiny_causal_wan

        return tiny_causal_wan(cls, **kwargs)
