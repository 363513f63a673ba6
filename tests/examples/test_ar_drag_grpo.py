"""The AR-Drag GRPO job as a subprocess with tiny budgets: outputs, sweeps, kill-and-resume, config typos."""

import csv
import re
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
TINY = ["grpo.num_controls=2", "grpo.group_size=2", "run.eval_clips=2", "run.video_clips=1", "run.tensorboard=false", "run.checkpoint_every=1"]


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
    proc = run(f"hydra.run.dir={out}", "run.iterations=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(rows(out / "metrics.csv")) == 2
    assert {"reward/trajectory", "reward/trajectory/value", "reward/quality"} <= set(rows(out / "metrics.csv")[0])
    for name in ("plots.png", "videos_before.gif", "videos_after.gif", "eval.md", "eval.json", "eval_before.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "ckpt-00000002" / "policy.safetensors").is_file()
    assert "trajectory_error" in (out / "eval.md").read_text()
    # a finished run is not retrained
    again = run(f"hydra.run.dir={out}", "run.iterations=2")
    assert again.returncode == 0 and "resumed from iteration 2" in again.stdout


def test_multirun_sweep_makes_one_directory_per_job(tmp_path):
    proc = run("-m", f"hydra.sweep.dir={tmp_path}", "schedule=one_step_per_frame,all_steps", "run.iterations=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.csv").exists())
    assert len(jobs) == 2
    assert [(p / ".hydra" / "overrides.yaml").read_text().count("all_steps") for p in jobs] == [0, 1]


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    straight = tmp_path / "straight"
    assert run(f"hydra.run.dir={straight}", "run.iterations=3").returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(f"hydra.run.dir={killed}", "run.iterations=3"), cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "ckpt-00000001").exists():
        assert proc.poll() is None and time.time() < deadline, "job ended or stalled before its first checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run(f"hydra.run.dir={killed}", "run.iterations=3")
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


def test_cfg_job_prints_the_whole_config_and_runs_nothing(tmp_path):
    proc = run(f"hydra.run.dir={tmp_path}", "--cfg=job")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("policy:", "_target_: examples.ar_drag.components.sprites_student", "step:", "_target_: rldiff.flow.CPSStep",
                 "advantage:", "_target_: rldiff.advantages.RenormalizedPerTermAdvantage", "lr_schedule:", "total_iters: ${run.iterations}",
                 "grpo:", "kl_coef: 0.01", "run:", "iterations: 150", "collector:", "shared_noise: true"):  # fmt: skip
        assert line in proc.stdout, line
    assert not (tmp_path / "metrics.csv").exists()


def compose_job(*overrides: str):
    from hydra import compose, initialize_config_dir

    import examples.ar_drag_grpo  # noqa: F401  (registers the structured configs)

    with initialize_config_dir(config_dir=str(ROOT / "examples"), version_base=None):
        return compose("ar_drag_grpo", overrides=list(overrides))


def test_defaults_build_the_documented_parts_by_instantiate():
    from functools import partial

    from hydra.utils import instantiate

    from rewards import IncrementReward, LogReward, LucasKanadeTracker, TrajectoryHingeReward
    from rewards.sprites import SpritesQualityReward
    from rldiff.advantages import GroupAdvantage, PerTermAdvantage, RenormalizedPerTermAdvantage
    from rldiff.flow import CPSStep, EulerMaruyamaStep

    cfg = compose_job()
    assert cfg.collector.shared_noise is True and cfg.grpo.kl_coef == 0.01 and cfg.grpo.lr == 2e-4
    assert (cfg.run.eval_clips, cfg.run.eval_draws, cfg.run.iterations) == (64, 3, 150)
    reward = instantiate(cfg.reward, tracker=instantiate(cfg.tracker))
    assert reward.term_weights == {"trajectory": 1.0, "quality": 0.7}
    trajectory = reward.rewards["trajectory"]
    assert isinstance(trajectory, IncrementReward) and isinstance(trajectory.inner, TrajectoryHingeReward)
    assert isinstance(trajectory.inner.tracker, LucasKanadeTracker) and trajectory.inner.lost == "stale"
    assert isinstance(reward.rewards["quality"], LogReward) and isinstance(reward.rewards["quality"].inner, SpritesQualityReward)
    advantage = instantiate(cfg.advantage).with_default_weights(reward.term_weights)
    assert isinstance(advantage, RenormalizedPerTermAdvantage) and dict(advantage.weights) == {"trajectory": 1.0, "quality": 0.7}
    assert instantiate(cfg.step) == CPSStep(0.5)
    schedule = instantiate(cfg.lr_schedule)
    assert isinstance(schedule, partial) and schedule.keywords["total_iters"] == 150  # the run's length

    # the other options of each group
    plain = instantiate(compose_job("reward.increments=false").reward, tracker=LucasKanadeTracker())
    assert isinstance(plain.rewards["trajectory"], TrajectoryHingeReward)
    extra = instantiate(compose_job("reward.lost_weight=0.5", "reward.consistency_weight=50", "reward.consistency_radius=3").reward, tracker=LucasKanadeTracker())
    assert set(extra.rewards) == {"trajectory", "consistency", "quality"}
    assert extra.term_weights == {"trajectory": 1.0, "consistency": 1.0, "quality": 0.7, "trajectory/lost": -0.5}
    assert extra.rewards["consistency"].lam == 50.0 and extra.rewards["consistency"].radius == 3
    assert type(instantiate(compose_job("advantage=per_term").advantage)) is PerTermAdvantage
    assert type(instantiate(compose_job("advantage=group").advantage)) is GroupAdvantage
    assert isinstance(instantiate(compose_job("step=euler_maruyama").step), EulerMaruyamaStep)
    assert instantiate(compose_job("lr_schedule=constant", "run.iterations=7").lr_schedule).keywords == {"factor": 1.0, "total_iters": 0}
    assert instantiate(compose_job("run.iterations=7").lr_schedule).keywords["total_iters"] == 7


def test_aesthetic_reward_option_names_its_local_files():
    cfg = compose_job("reward=aesthetic", "reward.quality.clip_path=/nowhere/clip", "reward.quality.head_path=/nowhere/head.pth")
    assert cfg.reward.quality == {"_target_": "rewards.AestheticReward", "clip_path": "/nowhere/clip", "head_path": "/nowhere/head.pth"}
    assert (cfg.reward.quality_name, cfg.reward.quality_weight, cfg.reward.quality_log) == ("aesthetic", 1.0, False)


@pytest.mark.parametrize(
    "override, message",
    [
        ("grpo.adv_clip=-1", "grpo.adv_clip must be a finite number >= 1e-08, got -1.0"),
        ("grpo.adv_clip=0", "grpo.adv_clip must be a finite number >= 1e-08, got 0.0"),
        ("grpo.kl_coef=-1", "grpo.kl_coef must be a finite number >= 0.0, got -1.0"),
        ("grpo.group_size=0", "grpo.group_size must be an int >= 2, got 0"),
        ("run.checkpoint_every=0", "run.checkpoint_every must be an int >= 1, got 0"),
        ("run.eval_clips=0", "run.eval_clips must be an int >= 1 and <= 64, got 0"),
        ("run.eval_clips=65", "run.eval_clips must be an int >= 1 and <= 64, got 65"),
        ("run.eval_draws=0", "run.eval_draws must be an int >= 1, got 0"),
        ("run.video_clips=5", "run.video_clips must be an int >= 1 and <= 2, got 5"),
        ("policy.shift=nan", "policy.shift must be a finite number, got nan"),
    ],
)
def test_settings_that_make_a_run_meaningless_fail_before_anything_is_built(override, message):
    from examples.ar_drag_grpo import validate
    from examples.common.settings import SettingError

    cfg = compose_job("run.eval_clips=2", override)
    with pytest.raises(SettingError, match=re.escape(message)):
        validate(cfg, heldout_size=64)


def test_a_bad_setting_writes_nothing(tmp_path):
    proc = run(f"hydra.run.dir={tmp_path}", "run.video_clips=5")
    assert proc.returncode != 0 and "run.video_clips must be an int >= 1 and <= 2, got 5" in proc.stderr
    assert not (tmp_path / "eval_before.json").exists() and not (tmp_path / "settings.json").exists()


def test_resuming_with_other_settings_is_refused_naming_them(tmp_path):
    first = run(f"hydra.run.dir={tmp_path}", "run.iterations=1")
    assert first.returncode == 0, first.stderr[-3000:]
    other = run(f"hydra.run.dir={tmp_path}", "run.iterations=2", "run.seed=1", "run.eval_draws=2")
    assert other.returncode != 0
    assert "run.seed: 0 in the run, 1 now" in other.stderr and "run.eval_draws: 3 in the run, 2 now" in other.stderr
    # a longer run moves the end of the linear lr schedule too (it follows run.iterations): refused, with the way out
    assert "lr_schedule.total_iters: 1 in the run, 2 now" in other.stderr and "give lr_schedule.total_iters the run's value" in other.stderr
    assert len(rows(tmp_path / "metrics.csv")) == 1  # nothing was added to the run
