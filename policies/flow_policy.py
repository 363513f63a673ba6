"""``FlowPolicy``: a causal velocity model as an RL policy of the AR denoising MDP.

Satisfies ``rldiff.protocols.Policy`` (``reset``, ``act``) and
``rldiff.protocols.RolloutPolicy`` (``recompute``, ``parameters``).

Acting runs the model's KV-cache path one step at a time; ``recompute`` runs
the parallel block-causal path once over a whole rollout. Both see the same
numbers because:

- the conditioning is a pure function of (control row, ``cond_seed``): each
  row is encoded on its own with a fresh ``torch.Generator`` seeded with
  ``cond_seed``, so the Gaussian-noise placeholders of a row are the same
  whichever batch, subset or order of rows it is encoded in;
- the model timestep is always ``1000 * sigma`` computed here in float32 from
  the observation's ``sigma`` (acting) or the rollout's ``("steps", "sigma")``
  (recompute); the observation's ``"timestep"`` is not read;
- the stochastic step's mean is that of the policy's ``step`` (an
  ``rldiff.flow.StochasticStep``: ``CPSStep`` or ``EulerMaruyamaStep``), in
  float32 in both.

Blocks: a model with ``frames_per_block = P > 1`` (``CausalWan`` of a public
Self-Forcing / LongLive / CausVid student) takes one decision per block. The
observation's ``frame_index`` is then the block's first frame, the action and
mean are the block ``[R, P, C, H, W]`` and ``log_prob`` is ``[R, P]``, one per
frame (the Gaussian is diagonal, so the block's log-density is their sum).
``recompute`` reads the rollout frame by frame as before: the collector records
a block step as ``P`` consecutive frame steps.

Memory and precision: the conditioning of each control row is encoded once and
memoized (:class:`policies.cond_memo.ConditioningMemo`), so acting, recompute
and a KL reference built by ``copy.deepcopy`` (which shares the frozen encoder
and the memo, never copies them) read the same tensors. ``compute_dtype``
bfloat16 runs the model under ``torch.autocast`` on both paths while the
weights (the optimizer's master copy) stay float32; the SDE step, log-probs and
KL are computed in float32 outside autocast.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from tensordict import TensorDict
from torch import Tensor, nn

from policies.cond_memo import ConditioningMemo
from rldiff.flow import StochasticStep, gaussian_log_prob, ode_step
from rldiff.types import Control

__all__ = ["FlowPolicy", "encode_rows"]


def encode_rows(encoder, control: Control, num_frames: int, seed: int) -> TensorDict:
    """Conditioning of ``control``'s rows, each encoded with a fresh generator seeded ``seed`` -> batch ``[B]``."""
    rows = []
    for i in range(control.batch_size):
        generator = torch.Generator().manual_seed(int(seed))
        rows.append(encoder.encode(control.index([i]), num_frames, generator=generator))
    return torch.cat(rows, dim=0)


def _same_for_all_rows(values: Tensor, name: str) -> Tensor:
    """``values [R, ...]`` must be equal across rows; returns row 0."""
    if values.shape[0] and not bool((values == values[:1]).all()):
        raise ValueError(f"{name} must be the same for every row (rows advance in lockstep), got {values.tolist()}")
    return values[0]


class FlowPolicy(nn.Module):
    """Gaussian policy around a causal flow model's SDE step.

    Args:
        model: a causal velocity model with ``new_cache(cond)``,
            ``forward_frame(x, m, timestep, cond, cache)``, ``commit(clean, m, cond, cache)``
            and ``forward_parallel(clean, noisy, noisy_frames, noisy_timestep, cond)``
            (e.g. :class:`policies.CausalWan`).
        encoder: anything with ``encode(control, num_frames, generator) -> Conditioning``.
            Not registered as a submodule: its (frozen) weights stay out of ``parameters()``.
        step: the stochastic step, an :class:`rldiff.flow.StochasticStep` such as
            ``rldiff.CPSStep(eta)`` (coefficient-preserving: keeps samples clean
            with few coarse steps) or ``rldiff.EulerMaruyamaStep(eta)``
            (Flow-GRPO's SDE step). It validates its own arguments.
        cond_seed: seed of the conditioning's noise placeholders (see module doc).
        num_steps, shift: the sampling schedule the model was distilled for
            (``N`` steps per frame at ``shifted_sigmas(N, shift)``); the env and
            ``generate`` built for this policy read them.
        compute_dtype: dtype of the model's matmuls (``"float32"`` or ``"bfloat16"``, run
            under ``torch.autocast``); weights and everything after the velocity stay float32.
        cond_memo_rows: control rows whose conditioning is memoized (0: encode on every call).
    """

    def __init__(
        self, model: nn.Module, encoder, step: StochasticStep, cond_seed: int = 0, num_steps: int = 3, shift: float = 1.0,
        compute_dtype: str | torch.dtype = "float32", cond_memo_rows: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        dtype = getattr(torch, compute_dtype, None) if isinstance(compute_dtype, str) else compute_dtype
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"FlowPolicy: compute_dtype must be float32, bfloat16 or float16, got {compute_dtype!r}")
        self.compute_dtype = dtype
        object.__setattr__(self, "memo", ConditioningMemo(cond_memo_rows))
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"FlowPolicy: num_steps must be a positive int, got {num_steps!r}")
        if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
            raise ValueError(f"FlowPolicy: shift must be a finite number > 0, got {shift!r}")
        self.num_steps, self.shift = num_steps, float(shift)
        if isinstance(step, (str, int, float)) or not isinstance(step, StochasticStep):
            raise TypeError(
                "FlowPolicy: step must be a stochastic step object (rldiff.flow.StochasticStep, e.g. "
                f"rldiff.CPSStep(eta) or rldiff.EulerMaruyamaStep(eta)), got {type(step).__name__} {step!r}"
            )
        self.model = model
        object.__setattr__(self, "encoder", encoder)
        self.step, self.cond_seed = step, int(cond_seed)
        self._control: Control | None = None
        self._cond: TensorDict | None = None
        self._cache = None
        self._committed: list[Tensor] = []

    def __deepcopy__(self, memo: dict) -> "FlowPolicy":
        """A copy of the model and step; the frozen encoder and the conditioning memo are shared, not copied."""
        memo[id(self.encoder)], memo[id(self.memo)] = self.encoder, self.memo
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            object.__setattr__(new, key, copy.deepcopy(value, memo))
        return new

    # -- conditioning -----------------------------------------------------------
    def conditioning(self, control: Control, num_frames: int) -> TensorDict:
        """The conditioning of ``control`` for ``num_frames`` latent frames, on the model's device (memoized per row)."""
        device = next(self.model.parameters()).device
        return self.memo.rows(control, num_frames, self.cond_seed, lambda row: encode_rows(self.encoder, row, num_frames, self.cond_seed).to(device))

    def autocast(self):
        """The context the model runs in: ``torch.autocast`` at ``compute_dtype`` (nothing for float32)."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(next(self.model.parameters()).device.type, dtype=self.compute_dtype)

    def reset(self, control: Control) -> None:
        """Start ``R = len(control)`` episodes; the conditioning is built at the first ``act`` (F from the snapshot)."""
        if not isinstance(control, Control):
            raise TypeError(f"reset expects an rldiff.types.Control, got {type(control).__name__}")
        self._control, self._cond, self._cache, self._committed = control, None, None, []

    @property
    def frames_per_block(self) -> int:
        """``P``: latent frames per decision (the model's ``frames_per_block``, 1 when it has none)."""
        return int(getattr(self.model, "frames_per_block", 1))

    def _sync_cache(self, snapshot: Tensor, m: int) -> None:
        """Make the cache hold exactly ``snapshot[:, :m]`` (whole blocks): rebuild when it holds anything else, then commit the rest."""
        p = self.frames_per_block
        num_blocks = m // p
        chunk = (lambda j: snapshot[:, j]) if p == 1 else (lambda j: snapshot[:, j * p : (j + 1) * p])  # [R, (P,) C, H, W]
        num = len(self._committed)
        stale = self._cache is None or num > num_blocks or any(not torch.equal(c, chunk(j)) for j, c in enumerate(self._committed))
        if stale:
            self._cache, self._committed = self.model.new_cache(self._cond), []
        for j in range(len(self._committed), num_blocks):
            clean = chunk(j)
            if p == 1:
                self.model.commit(clean, j, self._cond, self._cache)
            else:
                self.model.commit_block(clean, j, self._cond, self._cache)
            self._committed.append(clean.clone())

    def stochastic_step(self, x: Tensor, v: Tensor, sigma: Tensor, sigma_next: Tensor, noise=None, generator=None):
        """``(x_next, mean, std)`` of this policy's stochastic step (levels broadcastable to ``x``)."""
        return self.step(x, v, sigma, sigma_next, noise=noise, generator=generator)

    # -- acting -----------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: TensorDict, stochastic: bool, generator: torch.Generator | None = None) -> TensorDict:
        """One decision: ``obs`` (batch ``[R]``: snapshot, frame_index, sigma, sigma_next) -> action, mean, std, log_prob."""
        if self._control is None:
            raise RuntimeError("FlowPolicy.act called before reset(control)")
        snapshot = obs["snapshot"]  # [R, F, C, H, W]
        r, num_frames = snapshot.shape[:2]
        if r != self._control.batch_size:
            raise ValueError(f"obs has R = {r} rows but reset got {self._control.batch_size} controls")
        m = int(_same_for_all_rows(obs["frame_index"], "obs['frame_index']"))
        p = self.frames_per_block
        if m % p:
            raise ValueError(f"obs['frame_index'] = {m} must be the first frame of a block of frames_per_block = {p} frames")
        if self._cond is None or self._cond["frames"].shape[1] != num_frames:
            self._cond, self._cache, self._committed = self.conditioning(self._control, num_frames), None, []
        device = next(self.model.parameters()).device
        snapshot = snapshot.to(device)
        with self.autocast():
            self._sync_cache(snapshot, m)

        sigma = obs["sigma"].to(device).float().reshape(r)  # [R]
        sigma_next = obs["sigma_next"].to(device).float().reshape(r)  # [R]
        with self.autocast():
            if p == 1:
                x = snapshot[:, m].float()  # [R, C, H, W]
                v = self.model.forward_frame(x, m, 1000.0 * sigma, self._cond, self._cache).float()  # [R, C, H, W]
            else:
                x = snapshot[:, m : m + p].float()  # [R, P, C, H, W]
                v = self.model.forward_block(x, m // p, 1000.0 * sigma, self._cond, self._cache).float()  # [R, P, C, H, W]
        levels = (r,) + (1,) * (x.dim() - 1)
        s, s_next = sigma.view(levels), sigma_next.view(levels)
        if stochastic:
            action, mean, std = self.stochastic_step(x, v, s, s_next, generator=generator)
            std = std.expand(levels).reshape(r)  # [R]
            if p == 1:
                log_prob = gaussian_log_prob(action, mean, std)  # [R]
            else:  # one log-prob per frame of the block
                log_prob = gaussian_log_prob(action.flatten(0, 1), mean.flatten(0, 1), std.repeat_interleave(p)).view(r, p)  # [R, P]
        else:
            action = ode_step(x, v, s, s_next)
            mean, std = action, torch.zeros(r, device=device)
            log_prob = torch.zeros(r, device=device) if p == 1 else torch.zeros(r, p, device=device)
        return TensorDict({"action": action, "mean": mean, "std": std, "log_prob": log_prob}, batch_size=[r], device=device)

    # -- GRPO -------------------------------------------------------------------
    def recompute(self, rollout: TensorDict, control: Control) -> Tensor:
        """SDE means ``[R, S, C, H, W]`` of the rollout's recorded steps under the current weights, in one parallel pass.

        Uses ``rollout["clean"]`` as history and each ``("steps", "latent")`` at its
        ``("steps", "sigma")``; the steps' frames must be the same for every row
        (the stochasticity mask is shared by one collection). Differentiable.
        """
        clean = rollout["clean"]  # [R, F, C, H, W]
        steps = rollout["steps"]
        r, num_frames = clean.shape[:2]
        latent = steps["latent"]  # [R, S, C, H, W]
        num_steps = latent.shape[1]
        if control.batch_size != r:
            raise ValueError(f"recompute: control has {control.batch_size} rows, rollout has R = {r}")
        if num_steps == 0:
            return latent.new_zeros(latent.shape).float()
        frames = _same_for_all_rows(steps["frame"], "rollout ('steps', 'frame')").long()  # [S]
        device = next(self.model.parameters()).device
        cond = self.conditioning(control, num_frames)
        sigma = steps["sigma"].to(device).float()  # [R, S]
        sigma_next = steps["sigma_next"].to(device).float()  # [R, S]
        latent = latent.to(device).float()
        p = self.frames_per_block
        history = clean[:, : int(frames.max()) // p * p].to(device)  # [R, F_c, C, H, W]: the whole blocks before the last step's block
        with self.autocast():
            v = self.model.forward_parallel(history, latent, frames, 1000.0 * sigma, cond).float()  # [R, S, C, H, W]
        s, s_next = sigma[..., None, None, None], sigma_next[..., None, None, None]
        _, mean, _ = self.stochastic_step(latent, v, s, s_next, noise=torch.zeros_like(latent))
        return mean  # [R, S, C, H, W]
