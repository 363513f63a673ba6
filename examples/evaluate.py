"""The paper's table for any model: latency, FID, FVD, aesthetic, motion smoothness, motion consistency, tracking figures.

Default: the bundled Sprites-Drag teacher and student on the Sprites-Drag held-out
split, FID / FVD with the bundled Sprites-Drag feature network, motion smoothness
with the weight-free blend interpolator (labelled: not comparable with VBench),
no aesthetic column (needs local CLIP + LAION head files). Reference statistics of
the real videos are cached as .npz (``reference_cache``).

Outputs in the run directory, under eval/: table.md, table.json, chart.png,
videos_<model>.gif (target trajectory white, tracked red).

Models (``models=[...]``): ``teacher`` / ``student`` (bundled), ``undistilled[:DIR]`` (the
student before distillation: a teacher's weights, default the bundled one, made causal), ``run:DIR`` (a GRPO
run's newest checkpoint on the policy group's student), ``causal:DIR`` (a saved
CausalWan directory), ``bidirectional:DIR`` (a teacher directory), ``policy`` (the
policy group as configured, e.g. ``policy=wan policy.path=...``); ``NAME@SPEC`` names a column.

Launch:
    python examples/evaluate.py
    python examples/evaluate.py models=[teacher,student,grpo@run:outputs/2026-12-03/22-30-00]
    python examples/evaluate.py benchmark=/data/my_benchmark fid_features=inception fid_features.path=/models/inception-2015-12-05.pt \
        fvd_features=i3d fvd_features.path=/models/i3d_torchscript.pt aesthetic=vbench aesthetic.clip_path=... aesthetic.head_path=...
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import MISSING
from tqdm import tqdm

from examples.ar_drag import components
from examples.ar_drag.benchmark import load_benchmark
from examples.ar_drag.evaluation import VideoMetrics, bidirectional_sampler, bidirectional_stream, causal_sampler, causal_stream, evaluate, latency_row, results_table
from examples.common.visualize import draw_tracks, save_video_grid
from rldiff.checkpoint import save_json
from rldiff.metrics import load_statistics, measure_latency, save_statistics


# ----------------------------------------------------------------------------- config groups of this job
@dataclass
class SpritesFramesConf:
    """FID features of the Sprites-Drag world (bundled, trained by benchmarks/train_sprites_features.py)."""

    _target_: str = "rewards.sprites_features.SpritesFrameFeatures"
    path: str = str(components.BUNDLE / "features.safetensors")  # the feature network's safetensors


@dataclass
class SpritesClipsConf(SpritesFramesConf):
    """FVD features of the Sprites-Drag world (8-frame clips)."""

    _target_: str = "rewards.sprites_features.SpritesClipFeatures"


@dataclass
class InceptionConf:
    """FID features: NVlabs' Inception-v3 TorchScript (inception-2015-12-05.pt, as clean-fid / StyleGAN loads it)."""

    _target_: str = "rewards.feature_nets.InceptionFeatures"
    path: str = MISSING  # local .pt file (never downloaded)
    device: str = "cpu"  # where it runs
    batch_size: int = 64  # frames per forward


@dataclass
class I3DConf:
    """FVD features: StyleGAN-V's I3D TorchScript (i3d_torchscript.pt); the standard protocol uses 16-frame clips."""

    _target_: str = "rewards.feature_nets.I3DFeatures"
    path: str = MISSING  # local .pt file (never downloaded)
    device: str = "cpu"  # where it runs
    batch_size: int = 16  # clips per forward


@dataclass
class BlendConf:
    """Weight-free interpolation (the neighbours' average): motion smoothness NOT comparable with VBench's AMT-S figures."""

    _target_: str = "hydra.utils.get_method"
    path: str = "rldiff.metrics.blend_interpolate"  # the function


@dataclass
class TorchScriptInterpolatorConf:
    """A local TorchScript interpolator ``forward(before, after) -> middle`` (wrap AMT-S for VBench-comparable figures)."""

    _target_: str = "rewards.feature_nets.TorchScriptInterpolator"
    path: str = MISSING  # local .pt file
    device: str = "cpu"  # where it runs
    batch_size: int = 32  # frame pairs per forward


@dataclass
class LaionAestheticConf:
    """The LAION improved aesthetic predictor (rewards.AestheticReward), about 1-10."""

    _target_: str = "examples.ar_drag.evaluation.LaionAesthetic"
    clip_path: str = MISSING  # CLIP ViT-L/14 directory
    head_path: str = MISSING  # LAION improved head (.pth / .safetensors)
    device: str = "cpu"  # where CLIP runs


@dataclass
class VBenchAestheticConf(LaionAestheticConf):
    """VBench's aesthetic quality: LAION's linear head (sa_0_4_vit_l_14_linear.pth) / 10, 0-1."""

    _target_: str = "examples.ar_drag.evaluation.VBenchAesthetic"


@dataclass
class EvaluateConfig:
    """Evaluation job. Every field is a Hydra override; `--cfg job` prints them all."""

    defaults: list[Any] = field(
        default_factory=lambda: [
            "_self_", {"policy": "sprites_student"}, {"step": "cps"}, {"codec": "pixel"}, {"controls": "sprites"}, {"tracker": "lucas_kanade"},
            {"fid_features": "sprites"}, {"fvd_features": "sprites"}, {"interpolator": "blend"}, {"aesthetic": None},
        ]
    )  # fmt: skip
    policy: Any = MISSING  # the student behind run:DIR / policy entries, and the control encoder of every model (group: sprites_student, wan)
    step: Any = MISSING  # the policy's stochastic step (unused by ODE sampling; group: cps, euler_maruyama)
    codec: Any = MISSING  # latents <-> pixels (group: pixel, wan_vae)
    controls: Any = MISSING  # Sprites-Drag controls when no benchmark folder is given (group: sprites)
    tracker: Any = MISSING  # point tracker of motion consistency (group: lucas_kanade, cotracker)
    fid_features: Any = None  # frame features of FID (group: sprites, inception; ~fid_features: no FID)
    fvd_features: Any = None  # clip features of FVD (group: sprites, i3d; ~fvd_features: no FVD)
    interpolator: Any = None  # motion smoothness interpolator (group: blend, torchscript; ~interpolator: no column)
    aesthetic: Any = None  # aesthetic column (group: laion, vbench; null: none)
    models: list[str] = field(default_factory=lambda: ["teacher", "student"])  # [NAME@]teacher|student|run:DIR|causal:DIR|bidirectional:DIR|policy
    benchmark: str | None = None  # a user benchmark folder (examples/ar_drag/benchmark.py); null: the Sprites-Drag held-out split
    clips: int = 64  # Sprites-Drag held-out controls (a benchmark folder: all its items)
    draws: int = 1  # initial noises per control
    chunk: int = 16  # controls per sampling batch
    seed: int = 0  # noise of the sampled videos
    teacher_steps: int = 20  # ODE steps of bidirectional models
    teacher_shift: float = 3.0  # their timestep shift
    latency_warmup: int = 1  # untimed generations before timing
    latency_repeats: int = 5  # timed generations (the median is reported), one control each
    video_clips: int = 3  # clips drawn per model in videos_<model>.gif
    reference_cache: str = "outputs/reference_stats"  # directory of the cached .npz reference statistics


cs = ConfigStore.instance()
cs.store(name="evaluate", node=EvaluateConfig)
components.register(cs)
for _group, _options in {
    "fid_features": {"sprites": SpritesFramesConf, "inception": InceptionConf},
    "fvd_features": {"sprites": SpritesClipsConf, "i3d": I3DConf},
    "interpolator": {"blend": BlendConf, "torchscript": TorchScriptInterpolatorConf},
    "aesthetic": {"laion": LaionAestheticConf, "vbench": VBenchAestheticConf},
}.items():
    for _name, _node in _options.items():
        cs.store(group=_group, name=_name, node=_node)

CHART_KEYS = ["latency_first_frame_s", "fps", "fid", "fvd", "aesthetic", "motion_smoothness", "objmc_px", "trajectory_error", "sprite_offset", "quality"]


KINDS = ("teacher", "student", "undistilled", "run", "causal", "bidirectional", "policy")


def parse_model(entry: str) -> tuple[str, str, str | None]:
    """``[NAME@]kind[:path]`` -> (column name, kind, path)."""
    name, _, spec = entry.partition("@") if "@" in entry.split(":", 1)[0] else ("", "", entry)
    kind, _, path = spec.partition(":")
    needs_path = kind in ("run", "causal", "bidirectional")
    if kind not in KINDS or (needs_path and not path) or (path and not (needs_path or kind == "undistilled")):
        raise ValueError(f"models: {entry!r} is not one of teacher, student, undistilled[:DIR], policy, run:DIR, causal:DIR, bidirectional:DIR (optionally NAME@...)")
    return name or (f"{kind}:{Path(path).name}" if path else kind), kind, path or None


def build_model(kind: str, path: str | None, cfg, codec):
    """(model, is_causal, num_steps, shift) of one entry; causal models share the policy group's settings."""
    from policies import CausalWan
    from policies.teacher import BidirectionalWan
    from rldiff.run_state import load_policy_weights

    if kind in ("teacher", "bidirectional"):
        teacher = BidirectionalWan.from_pretrained(path or components.BUNDLE / "teacher").requires_grad_(False).eval()
        return teacher, False, cfg.teacher_steps, cfg.teacher_shift
    if kind == "undistilled":  # the student before distillation: the teacher's weights, causal, the policy's steps
        policy = instantiate(cfg.policy, codec=codec, step=cfg.step)
        window, sink = policy.model.window, policy.model.sink
        model = CausalWan.from_pretrained(path or components.BUNDLE / "teacher", extra_in_channels=0, window=window, sink=sink)
        return model.requires_grad_(False).eval(), True, policy.num_steps, policy.shift
    overrides = {"path": str(components.BUNDLE / "student")} if kind == "student" else {"path": path} if kind == "causal" else {}
    policy = instantiate(cfg.policy, codec=codec, step=cfg.step, **overrides)
    if kind == "run":
        policy.model.load_state_dict(load_policy_weights(path))  # strict: a run of another model fails naming the keys
    return policy.model.requires_grad_(False).eval(), True, policy.num_steps, policy.shift


def reference_statistics(videos, metrics: VideoMetrics, cache: Path, source: str, batch: int) -> dict:
    """FID / FVD statistics of the real videos, cached as ``cache/<feature>.npz`` keyed by ``source``."""
    out, missing = {}, []
    for key, extractor in (("fid", metrics.frame_features), ("fvd", metrics.clip_features)):
        if extractor is None:
            continue
        digest = hashlib.sha1(source.encode()).hexdigest()[:10]
        path = cache / f"{key}_{getattr(extractor, 'name', type(extractor).__name__)}_{digest}.npz"
        if path.exists():
            mu, sigma, _ = load_statistics(path, source)
            out[key] = (mu, sigma)
        else:
            missing.append((key, path))
    if missing:
        real = VideoMetrics(metrics.frame_features if any(k == "fid" for k, _ in missing) else None, metrics.clip_features if any(k == "fvd" for k, _ in missing) else None)
        for i in tqdm(range(0, videos.shape[0], batch), desc="reference features", dynamic_ncols=True):
            real.add(videos[i : i + batch])
        stats = real.statistics()
        for key, path in missing:
            count = videos.shape[0] * (videos.shape[1] if key == "fid" else 1)
            save_statistics(path, *stats[key], count, source)
            out[key] = stats[key]
    return out


def plot_columns(path: Path, columns: dict[str, dict[str, float]], keys: list[str], labels: dict[str, str]) -> Path:
    """PNG: one bar panel per metric, one bar per model (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(2.6 * max(len(keys), 1), 3.0), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.bar(range(len(names)), [columns[n].get(key, float("nan")) for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(labels.get(key, key).split(" (")[0], fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(cfg: EvaluateConfig) -> dict:
    out = Path(HydraConfig.get().runtime.output_dir) / "eval"
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()

    # The benchmark: controls and the real videos behind the reference statistics
    if cfg.benchmark:
        bench = load_benchmark(cfg.benchmark)
        control, real, bench_name = bench.control, bench.videos, f"benchmark {Path(cfg.benchmark).resolve()}"
    else:
        source = instantiate(cfg.controls, split="heldout", num_heldout=cfg.clips)
        real, control = source.heldout_videos()
        bench_name = f"sprites-drag heldout {cfg.clips} ({source.image_size}px, {source.num_frames} frames)"
    num_frames = control.trajectory.shape[1]
    sprites = not cfg.benchmark
    if sprites:
        from rewards.sprites import SpritesQualityReward

        sprites_quality = SpritesQualityReward()

    # The metric parts
    codec, tracker = instantiate(cfg.codec), instantiate(cfg.tracker)
    parts = {k: instantiate(getattr(cfg, k)) if getattr(cfg, k) is not None else None for k in ("fid_features", "fvd_features", "interpolator", "aesthetic")}
    template = VideoMetrics(parts["fid_features"], parts["fvd_features"], parts["interpolator"], parts["aesthetic"])
    reference = {}
    if real is not None:
        reference = reference_statistics(real, template, Path(cfg.reference_cache), f"{bench_name} / draws 1 / {cfg.fid_features} / {cfg.fvd_features}", cfg.chunk)
    encoder = instantiate(cfg.policy, codec=codec, step=cfg.step).encoder  # every model reads controls through the policy group's encoder
    tf = int(getattr(codec, "temporal_factor", 1))
    latent_frames = num_frames if tf == 1 else (num_frames - 1) // tf + 1

    # Each model: sample, track, features, latency
    columns, notes = {}, []
    if real is None:
        notes.append("no real videos in the benchmark: FID / FVD left out")
    for entry in tqdm(cfg.models, desc="models", dynamic_ncols=True):
        name, kind, path = parse_model(entry)
        model, causal, steps, shift = build_model(kind, path, cfg, codec)
        if causal:
            sample = causal_sampler(model, encoder, codec, latent_frames, steps, shift)
            stream = causal_stream(model, encoder, codec, control.index([0]), latent_frames, steps, shift, cfg.seed)
        else:
            shape = (codec.latent_channels, *encoder.encode(control.index([0]), latent_frames)["frames"].shape[-2:])
            sample = bidirectional_sampler(model, encoder, shape, latent_frames, steps, shift)
            stream = bidirectional_stream(sample, codec, control.index([0]), cfg.seed)
        metrics = VideoMetrics(template.frame_features, template.clip_features, template.interpolate, template.aesthetic)
        bar = tqdm(total=control.batch_size * cfg.draws, desc=f"  {name}", dynamic_ncols=True, leave=False)

        quality = []  # Sprites-Drag: the world's quality figure (rewards.sprites.SpritesQualityReward), as in the distill job's table

        def on_video(video, part, metrics=metrics, bar=bar, quality=quality):
            metrics.add(video, part)
            if sprites:
                quality.append(sprites_quality.score(video, part).mean(1))  # [b]
            bar.update(video.shape[0])

        row, (video, tracks) = evaluate(sample, codec, control, tracker, draws=cfg.draws, chunk=cfg.chunk, seed=cfg.seed, sprites=sprites, on_video=on_video)
        bar.close()
        latency = measure_latency(stream, warmup=cfg.latency_warmup, repeats=cfg.latency_repeats)
        columns[name] = {**latency_row(latency, num_frames), **metrics.row(reference), **row}
        if quality:
            columns[name]["quality"] = float(torch.cat(quality).mean())
        clips = min(cfg.video_clips, video.shape[0])
        drawn = [draw_tracks(video[i], control.trajectory[i], control.visibility[i], tracks[i]) for i in range(clips)]
        save_video_grid(out / f"videos_{name.replace('/', '_').replace(':', '_')}.gif", drawn)

    # The table
    labels = {
        "fid": f"FID ({cfg.fid_features._target_.rsplit('.', 1)[-1] if cfg.fid_features else '-'})",
        "fvd": f"FVD ({cfg.fvd_features._target_.rsplit('.', 1)[-1] if cfg.fvd_features else '-'})",
        "motion_smoothness": "motion smoothness" + (" (blend interpolator: not comparable with VBench)" if cfg.interpolator and cfg.interpolator.get("path") == "rldiff.metrics.blend_interpolate" else ""),
        "aesthetic": getattr(parts["aesthetic"], "name", "aesthetic"),
    }
    table = results_table(columns)
    for key, label in labels.items():
        table = table.replace(f"| {key} |", f"| {label} |")
    wall = time.perf_counter() - started
    header = f"Benchmark: {bench_name}, {control.batch_size} controls x {cfg.draws} draws, ODE sampling; latency on {torch.get_num_threads()} CPU thread(s), batch 1."
    text = "\n".join([header, "", table, *(f"\nNote: {n}" for n in notes), f"\n(evaluation took {wall:.0f} s)"])
    save_json(out / "table.json", {"benchmark": bench_name, "columns": columns, "labels": labels, "wall_s": wall}, sort_keys=False)
    (out / "table.md").write_text(text + "\n")
    plot_columns(out / "chart.png", columns, [k for k in CHART_KEYS if any(k in c for c in columns.values())], labels)
    print(text)
    return columns


@hydra.main(version_base=None, config_name="evaluate")
def _entry(cfg: EvaluateConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    _entry()
