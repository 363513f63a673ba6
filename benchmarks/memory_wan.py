"""Per-GPU memory of one GRPO update of a Wan2.1 1.3B I2V causal student: a measured, checked memory model.

    python benchmarks/memory_wan.py                   # the table (CPU: ~2 min)
    python benchmarks/memory_wan.py --group-size 12 --micro-batch 2 --lora-rank 64
    python benchmarks/memory_wan.py --dim 64 --ffn 128 --heads 2 --text-dim 32 --image-dim 16   # quick self-check of the fit

Parameter counts come from the real configurations built on the meta device
(no weights): the CausalWan transformer (Wan2.1 1.3B I2V + 16 trajectory
channels), UMT5-XXL, CLIP ViT-H/14, the Wan VAE. Activations are MEASURED on CPU
at full width (dim 1536, ffn 8960, 512 text + 257 image tokens) with 1-3 layers
and tiny latents, as the bytes autograd saves for backward in one
``CausalWan.forward_parallel`` over a rollout of the AR-Drag schedule (one
stochastic step per frame: ``F_c = F - 1`` clean history frames + ``S = F``
noisy entries, window 7), and fitted by

    saved(layers, tpf) = layers * (alpha * tpf + beta) + gamma * tpf + delta      (tpf: tokens per latent frame)

which is exact for this code (every tensor is linear in tpf at a fixed frame
structure; the cross-attention K/V of the text and image tokens are beta). Four
measurements fix the coefficients, a fifth (3 layers, another tpf) checks them;
then the fit is evaluated at 30 layers and 1560 tokens per frame (480x832).
With activation checkpointing each block keeps only its input
``h [E * tpf, D]`` (E = F_c + S entries) and backward holds one block's
activations at a time: ``layers * E * tpf * D * bytes + alpha * tpf + beta + gamma * tpf + delta``.

Static terms (P = transformer parameters, P_t trainable, W = processes):
weights fp32 master ``4P / W`` (+ bf16 compute copies: autocast's cast cache
``2P`` on one process, FSDP2's gathered units ``2 (P_root + 2 P_block)``),
gradients ``4 P_t / W``, AdamW ``8 P_t / W``, KL reference (full fine-tuning: a
frozen fp32 copy, replicated, ``4P``; LoRA: the base with adapters off, 0).
The frozen encoders (UMT5-XXL, CLIP, VAE) encode once per collected batch and
are listed apart (keep them in bf16 on the GPU or offload them to the CPU).
With a GPU, ``--gpu`` also measures the peak of one real update at full size.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from tensordict import TensorDict

GB = 1e9
WAN_13B = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36, out_channels=16, text_dim=4096, freq_dim=256,
    ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=1536,
    rope_max_seq_len=1024,
)  # fmt: skip
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "ffn.net.0.proj", "ffn.net.2")  # policies.lora.LORA_TARGETS


def causal_wan(config: dict, layers: int, device: str = "cpu", seed: int = 0):
    from diffusers import WanTransformer3DModel

    from policies import CausalWan
    from policies.causal_wan_io import widen_patch_embedding

    torch.manual_seed(seed)
    with torch.device(device):
        tr = WanTransformer3DModel(**{**config, "num_layers": layers})
    if device != "meta":
        widen_patch_embedding(tr, 16)
        return CausalWan(tr, extra_in_channels=16, window=7)
    return tr


def param_counts(config: dict, lora_rank: int) -> dict[str, int]:
    """Parameters of the 1.3B transformer (total, per block, outside blocks, LoRA at ``lora_rank``), on the meta device."""
    tr = causal_wan(config, config["num_layers"], device="meta")
    total = sum(p.numel() for p in tr.parameters()) + 16 * config["num_attention_heads"] * config["attention_head_dim"] * 4  # + trajectory input channels (2x2 patch)
    block = sum(p.numel() for p in tr.blocks[0].parameters())
    lora = 0
    for name, mod in tr.blocks.named_modules():
        if isinstance(mod, torch.nn.Linear) and any(name.endswith(t) for t in LORA_TARGETS):
            lora += lora_rank * (mod.in_features + mod.out_features)
    return {"total": total, "block": block, "root": total - block * len(tr.blocks), "lora": lora}


def encoder_counts() -> dict[str, int]:
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        umt5 = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"))
        clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224, patch_size=14))
        vae = AutoencoderKLWan()
    return {name: sum(p.numel() for p in m.parameters()) for name, m in (("UMT5-XXL", umt5), ("CLIP ViT-H/14", clip), ("Wan VAE", vae))}


def saved_bytes(model, frames: int, tpf_hw: tuple[int, int], dtype: torch.dtype, text_len: int, image_len: int) -> int:
    """Bytes autograd saves for backward in one forward_parallel of one rollout (parameters excluded)."""
    h, w = 2 * tpf_hw[0], 2 * tpf_hw[1]  # latent H, W (patch 2x2)
    cfg = model.transformer.config
    g = torch.Generator().manual_seed(0)
    cond = TensorDict(
        {"text": torch.randn(1, text_len, cfg.text_dim, generator=g), "image": torch.randn(1, image_len, cfg.image_dim, generator=g),
         "frames": torch.randn(1, frames, model.cond_channels, h, w, generator=g)}, batch_size=[1],
    )  # fmt: skip
    clean = torch.randn(1, frames - 1, 16, h, w, generator=g)  # [1, F_c, C, H, W]
    noisy = torch.randn(1, frames, 16, h, w, generator=g)  # [1, S = F, C, H, W]
    model.to(dtype)  # before collecting the parameters' storages: .to() replaces them
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model.forward_parallel(clean, noisy, torch.arange(frames), torch.rand(1, frames) * 1000, cond)
    seen[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
    return sum(seen.values())


@dataclass
class Fit:
    alpha: float  # bytes per layer and token of a frame
    beta: float  # bytes per layer (cross-attention K/V of text + image tokens, modulation)
    gamma: float  # bytes per token outside the blocks (embedding, head)
    delta: float  # bytes outside the blocks

    def __call__(self, layers: int, tpf: int) -> float:
        return layers * (self.alpha * tpf + self.beta) + self.gamma * tpf + self.delta


def fit_activations(config: dict, frames: int, dtype: torch.dtype, text_len: int, image_len: int, log) -> tuple[Fit, float]:
    """Measure at (1, 2 layers) x (2 tpf), solve, check at 3 layers and a third tpf; returns the fit and its relative error."""
    grids = [(1, 2), (2, 4)]  # tokens per frame 2 and 8
    m = {}
    for layers in (1, 2):
        model = causal_wan(config, layers)
        for hw in grids:
            m[layers, hw[0] * hw[1]] = saved_bytes(model, frames, hw, dtype, text_len, image_len)
    (t1, t2) = [a * b for a, b in grids]
    per_layer = {t: m[2, t] - m[1, t] for t in (t1, t2)}
    alpha = (per_layer[t2] - per_layer[t1]) / (t2 - t1)
    beta = per_layer[t1] - alpha * t1
    outside = {t: m[1, t] - per_layer[t] for t in (t1, t2)}
    gamma = (outside[t2] - outside[t1]) / (t2 - t1)
    fit = Fit(alpha, beta, gamma, outside[t1] - gamma * t1)
    check_hw = (3, 4)
    measured = saved_bytes(causal_wan(config, 3), frames, check_hw, dtype, text_len, image_len)
    predicted = fit(3, 12)
    err = abs(predicted - measured) / measured
    log(f"  {str(dtype).split('.')[-1]:8s} alpha {fit.alpha / 1e3:9.1f} kB/(layer*tpf)  beta {fit.beta / 1e6:8.2f} MB/layer  gamma {fit.gamma / 1e3:8.1f} kB/tpf  "
        f"delta {fit.delta / 1e6:7.2f} MB | check 3 layers, 12 tpf: measured {measured / 1e6:.2f} MB, model {predicted / 1e6:.2f} MB ({100 * err:.2f}% off)")  # fmt: skip
    return fit, err


def table(args, counts, fits, log) -> list[dict]:
    p, p_block, p_root, p_lora = counts["total"], counts["block"], counts["root"], counts["lora"]
    layers, tpf, frames, dim = WAN_13B["num_layers"], args.tpf, args.frames, WAN_13B["num_attention_heads"] * WAN_13B["attention_head_dim"]
    entries = 2 * frames - 1
    rows = []
    for precision in ("fp32", "bf16"):
        bytes_ = 4 if precision == "fp32" else 2
        for ckpt in (False, True):
            for lora in (False, True):
                for world in (1, 8):
                    fit = fits[precision]
                    act = fit(layers, tpf)
                    if ckpt:
                        act = layers * entries * tpf * dim * bytes_ + fit.alpha * tpf + fit.beta + fit.gamma * tpf + fit.delta
                    trainable = p_lora if lora else p
                    master = 4 * p / world
                    if precision == "bf16":
                        copies = 2 * p if world == 1 else 2 * (p_root + 2 * p_block)
                    else:
                        copies = 0 if world == 1 else 4 * (p_root + 2 * p_block)
                    grads, adam = 4 * trainable / world, 8 * trainable / world
                    reference = 0 if lora else 4 * p
                    rollouts = args.group_size // world if world > 1 else args.group_size  # collected rollouts this GPU holds
                    stored = rollouts * (3 * frames + frames) * 16 * 60 * 104 * 4  # clean + (latent, action, mean) per step, fp32
                    static = master + copies + grads + adam + reference + stored
                    total = static + args.micro_batch * act
                    rows.append(dict(precision=precision, ckpt=ckpt, lora=lora, world=world, static=static, act=act, total=total,
                                     fit80=int(max(0, 80 * GB - static) // act), fit141=int(max(0, 141 * GB - static) // act),
                                     terms=(master, copies, grads, adam, reference, stored)))  # fmt: skip
    return rows


def gpu_peak(args, lora_rank: int) -> None:  # pragma: no cover - needs CUDA
    """One recompute + backward + AdamW step of the full-size model on the GPU: peak allocated memory (bf16 autocast, checkpointing on/off)."""
    for ckpt in (False, True):
        torch.cuda.reset_peak_memory_stats()
        model = causal_wan(WAN_13B, WAN_13B["num_layers"], device="cuda")
        model.checkpointing = ckpt
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        f, (h, w) = args.frames, (60, 104)
        cond = TensorDict({"text": torch.randn(1, 512, 4096), "image": torch.randn(1, 257, 1280), "frames": torch.randn(1, f, model.cond_channels, h, w)}, batch_size=[1]).to("cuda")
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            v = model.forward_parallel(torch.randn(1, f - 1, 16, h, w, device="cuda"), torch.randn(1, f, 16, h, w, device="cuda"), torch.arange(f), torch.rand(1, f, device="cuda") * 1000, cond)
        v.float().square().mean().backward()
        opt.step()
        torch.cuda.synchronize()
        print(f"GPU measured: bf16 autocast, fp32 master + AdamW, no reference, checkpointing {'on ' if ckpt else 'off'}: "
              f"peak {torch.cuda.max_memory_allocated() / GB:.1f} GB, update {time.perf_counter() - t0:.2f} s")  # fmt: skip
        del model, opt, v
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=21, help="latent frames F (81 pixel frames)")
    parser.add_argument("--tpf", type=int, default=1560, help="tokens per latent frame (480x832: 60x104 latents, patch 2x2)")
    parser.add_argument("--group-size", type=int, default=8, help="G: collected rollouts held per process (divided over 8 processes)")
    parser.add_argument("--micro-batch", type=int, default=1, help="rollouts per forward/backward (grpo.micro_batch_size)")
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--dim", type=int, default=1536, help="measurement width (1536 = Wan 1.3B); smaller only to test the fit quickly")
    parser.add_argument("--ffn", type=int, default=8960)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--text-dim", type=int, default=4096)
    parser.add_argument("--image-dim", type=int, default=1280)
    parser.add_argument("--gpu", action="store_true", help="also measure the full-size update on CUDA")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    log = print

    counts = param_counts(WAN_13B, args.lora_rank)
    enc = encoder_counts()
    log(f"Wan2.1 1.3B I2V CausalWan (meta device): {counts['total'] / 1e9:.3f} B parameters ({counts['block'] / 1e6:.1f} M per block x 30, "
        f"{counts['root'] / 1e6:.1f} M outside), LoRA rank {args.lora_rank} on attention + FFN: {counts['lora'] / 1e6:.1f} M")  # fmt: skip
    log("frozen encoders, once per collected batch (bf16 on GPU, or offloaded): " + ", ".join(f"{k} {v / 1e9:.2f} B = {2 * v / GB:.1f} GB" for k, v in enc.items()))
    measure = {**WAN_13B, "attention_head_dim": args.dim // args.heads, "num_attention_heads": args.heads, "ffn_dim": args.ffn,
               "text_dim": args.text_dim, "image_dim": args.image_dim, "added_kv_proj_dim": args.dim}  # fmt: skip
    log(f"activations measured on CPU at width {args.dim}, ffn {args.ffn}, F = {args.frames} (F_c = {args.frames - 1} clean + S = {args.frames} noisy entries), "
        "512 text + 257 image tokens, window 7; fit saved(layers, tpf) = layers*(alpha*tpf + beta) + gamma*tpf + delta:")  # fmt: skip
    t0 = time.perf_counter()
    fits = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        fits[precision], _ = fit_activations(measure, args.frames, dtype, 512, 257, log)
    log(f"  ({time.perf_counter() - t0:.0f} s)")
    rows = table(args, counts, fits, log)
    log(f"\nper GPU, one GRPO update at 480x832, F = {args.frames}, {args.tpf} tokens/frame, micro-batch {args.micro_batch} rollout(s), "
        f"G = {args.group_size} collected rollouts over the processes; GB = 1e9 bytes")  # fmt: skip
    log("static = fp32 master weights / W + bf16 compute copies + grads 4 P_t / W + AdamW 8 P_t / W + reference (4 P; LoRA 0) + stored rollouts")
    log("| precision | checkpointing | LoRA | processes (FSDP2) | master | copies | grads+AdamW | reference | static | activations / rollout | total | fits 80 GB | fits 141 GB | rollouts per micro-batch in 80 / 141 GB |")
    log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        master, copies, grads, adam, reference, _ = r["terms"]
        log(f"| {r['precision']} | {'on' if r['ckpt'] else 'off'} | {'r' + str(args.lora_rank) if r['lora'] else 'off'} | {r['world']} | "
            f"{master / GB:.1f} | {copies / GB:.1f} | {(grads + adam) / GB:.1f} | {reference / GB:.1f} | {r['static'] / GB:.1f} | {r['act'] / GB:.1f} | "
            f"{r['total'] / GB:.1f} | {'yes' if r['total'] <= 80 * GB else 'no'} | {'yes' if r['total'] <= 141 * GB else 'no'} | {r['fit80']} / {r['fit141']} |")  # fmt: skip
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA device (torch.cuda.is_available() is False)")
        gpu_peak(args, args.lora_rank)


if __name__ == "__main__":
    main()
