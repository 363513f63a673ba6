"""The AR-Drag GRPO job as a subprocess with tiny budgets: outputs, sweeps, kill-and-resume, config typos."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "ar_drag_grpo.py"
TINY = ["grpo.num_controls=2", "grpo.group_size=2", "trainer.eval_clips=2", "trainer.video_clips=1", "trainer.tensorboard=false", "trainer.checkpoint_every=1"]


def cmd(*overrides: str) -> list[str]:
    flags = [o for o in overrides if o.startswith("-")]  # Hydra flags (-m) go before the overrides
    return [sys.executable, str(SCRIPT), *flags, *TINY, *[o for o in overrides if not o.startswith("-")]]


def run(*overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd(*overrides), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_job_writes_metrics_plot_videos_checkpoint_and_table(tmp_path):
    out = tmp_path / "run"
    proc = run(f"hydra.run.dir={out}", "trainer.iterations=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(rows(out / "metrics.csv")) == 2
    assert {"reward/trajectory", "reward/trajectory/value", "reward/quality"} <= set(rows(out / "metrics.csv")[0])
    for name in ("plots.png", "videos_before.gif", "videos_after.gif", "eval.md", "eval.json", "eval_before.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "ckpt-00000002" / "policy.safetensors").is_file()
    assert "trajectory_error" in (out / "eval.md").read_text()
    # a finished run is not retrained
    again = run(f"hydra.run.dir={out}", "trainer.iterations=2")
    assert again.returncode == 0 and "resumed from iteration 2" in again.stdout


def test_multirun_sweep_makes_one_directory_per_job(tmp_path):
    proc = run("-m", f"hydra.sweep.dir={tmp_path}", "schedule=one_step_per_frame,all_steps", "trainer.iterations=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.csv").exists())
    assert len(jobs) == 2
    assert [(p / ".hydra" / "overrides.yaml").read_text().count("all_steps") for p in jobs] == [0, 1]


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    straight = tmp_path / "straight"
    assert run(f"hydra.run.dir={straight}", "trainer.iterations=3").returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(f"hydra.run.dir={killed}", "trainer.iterations=3"), cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "ckpt-00000001").exists():
        assert proc.poll() is None and time.time() < deadline, "job ended or stalled before its first checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run(f"hydra.run.dir={killed}", "trainer.iterations=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from iteration" in resumed.stdout
    a, b = rows(straight / "metrics.csv"), rows(killed / "metrics.csv")
    assert [r["reward_mean"] for r in a] == [r["reward_mean"] for r in b]
    assert (straight / "eval.json").read_text() == (killed / "eval.json").read_text()


def test_typo_in_override_is_a_hydra_error(tmp_path):
    proc = run(f"hydra.run.dir={tmp_path}", "grpo.klcoef=0.1")
    assert proc.returncode != 0
    assert "Key 'klcoef' not in 'GRPOConf'" in proc.stderr
    assert not (tmp_path / "metrics.csv").exists()


def test_quality_warning_flags_a_collapse_only():
    sys.path.insert(0, str(ROOT / "examples"))
    from ar_drag_grpo import quality_warning

    # the Sprites figure under quality_log: the log is negative, quality/value is the figure
    collapse = quality_warning({"quality": -2.9, "quality/value": 0.065}, {"quality": -9.0, "quality/value": 0.0001}, 0.5)
    assert collapse is not None and "quality/value fell by 100%" in collapse and "videos_after.gif" in collapse
    assert quality_warning({"quality": 0.065}, {"quality": 0.05}, 0.5) is None  # -23%: no warning
    assert "aesthetic fell by 60%" in quality_warning({"aesthetic": 5.0}, {"aesthetic": 2.0}, 0.5)
    assert quality_warning({"trajectory_error": 0.2}, {"trajectory_error": 0.1}, 0.5) is None  # no quality figure


class ReplayTrainer:
    """Stand-in for ``GRPOTrainer`` in ``evaluate``: its "rollouts" are the encoded ground-truth videos of the controls asked for."""

    def __init__(self, videos, control, codec, rows: int):
        from types import SimpleNamespace

        self.latents = codec.encode(videos)  # [B, F, C, h, w]
        self.first_x = control.trajectory[:, 0, 0, 0]  # [B] tells the controls apart (x of the first point)
        self.collector = SimpleNamespace(num_frames=videos.shape[1], num_steps=3, env=SimpleNamespace(num_envs=rows))
        self.calls = []

    def rollout(self, control, group_size, mask, generator):
        from tensordict import TensorDict

        assert group_size == 1 and not bool(mask.any())  # ODE, one rollout per control
        rows = [int((self.first_x - x).abs().argmin()) for x in control.trajectory[:, 0, 0, 0]]
        self.calls.append(rows)
        n = len(rows)
        return TensorDict({"clean": self.latents[rows], "reward": torch.full((n, self.latents.shape[1]), float(n))}, batch_size=[n])


def test_evaluate_pools_chunks_and_noise_draws_in_control_order():
    """5 held-out controls in chunks of 2, 2 draws: the pooled figures are those of the 5 videos scored at once."""
    sys.path.insert(0, str(ROOT / "examples"))
    from ar_drag_grpo import evaluate
    from sprites_eval import sprite_offset, tracking_stats

    from policies.codecs import PixelCodec
    from rewards.trackers import LucasKanadeTracker
    from rldiff.data.sprites import SpritesDrag

    videos, control = SpritesDrag(image_size=32, num_frames=8, split="heldout").heldout_videos()
    videos, control = videos[:5], control.index(list(range(5)))
    codec = PixelCodec(4)
    trainer = ReplayTrainer(videos, control, codec, rows=2)
    assert len(set(trainer.first_x.tolist())) == 5
    row, (video, tracks) = evaluate(trainer, control, codec, LucasKanadeTracker(), seed=0, draws=2, sprites=True)
    assert trainer.calls == [[0, 1], [2, 3], [4]] * 2  # chunks of the env's rows, once per draw
    truth, truth_tracks = tracking_stats(codec.decode(codec.encode(videos)).clamp(0, 1), control, LucasKanadeTracker())
    for key in ("trajectory_error", "lost_fraction", "position_error"):
        assert row[key] == pytest.approx(truth[key], rel=1e-5), key
    assert row["trajectory_error"] < 0.02  # ground truth is tracked closely: a row/control mix-up would not be
    assert row["sprite_offset"] == pytest.approx(sprite_offset(videos, control), abs=1e-4)
    assert row["reward"] == pytest.approx((2 * 2 * 8 * 2 + 1 * 8) / 5)  # mean over rows of each chunk's per-row sum
    assert video.shape[0] == 5 and torch.allclose(tracks, truth_tracks)  # the first draw, every control (more clips than a chunk can be drawn)


def test_defaults_score_increments_normalize_each_term_and_share_the_group_noise():
    from hydra import compose, initialize_config_dir

    sys.path.insert(0, str(ROOT / "examples"))
    import ar_drag_grpo  # noqa: F401  (registers the structured configs)
    from grpo_parts import build_reward, term_weights
    from rewards import IncrementReward, TrajectoryHingeReward

    with initialize_config_dir(config_dir=str(ROOT / "examples"), version_base=None):
        cfg = compose("ar_drag_grpo")
        plain = compose("ar_drag_grpo", overrides=["reward.increments=false"])
    assert cfg.grpo.shared_noise is True
    assert cfg.grpo.kl_coef == 0.01 and (cfg.trainer.eval_clips, cfg.trainer.eval_draws) == (64, 3)
    assert term_weights(cfg.grpo.advantage, build_reward(cfg.reward)) == {"trajectory": 1.0, "quality": 0.7}  # per-term advantages
    assert cfg.grpo.anneal_lr is True and cfg.grpo.lr == 2e-4
    trajectory = build_reward(cfg.reward).rewards["trajectory"]
    assert isinstance(trajectory, IncrementReward) and isinstance(trajectory.inner, TrajectoryHingeReward)
    assert isinstance(build_reward(plain.reward).rewards["trajectory"], TrajectoryHingeReward)
    with initialize_config_dir(config_dir=str(ROOT / "examples"), version_base=None):
        extra = compose("ar_drag_grpo", overrides=["reward.lost_weight=0.5", "reward.consistency_weight=50", "reward.consistency_radius=3"])
    reward = build_reward(extra.reward)
    assert set(reward.rewards) == {"trajectory", "consistency", "quality"}
    assert reward.sub_weights == {"trajectory/lost": -0.5}
    assert reward.rewards["consistency"].lam == 50.0 and reward.rewards["consistency"].radius == 3
    # per-term advantages weigh each reward term (and sub-component) by its composite weight
    assert term_weights("per_term", reward) == {"trajectory": 1.0, "consistency": 1.0, "quality": 0.7, "trajectory/lost": -0.5}
    assert term_weights("total", reward) is None
    with pytest.raises(ValueError, match=r"grpo.advantage must be 'total' or 'per_term', got 'sum'"):
        term_weights("sum", reward)
