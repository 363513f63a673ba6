"""The example jobs under torchrun (2 gloo processes, CPU): one shared run dir, 2 -> 1 process resume, dead and hung ranks."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from examples.common.launch import dist_settings, shared_dir_overrides  # noqa: E402

GRPO = ROOT / "examples" / "ar_drag_grpo.py"
TINY = ["grpo.num_controls=2", "grpo.group_size=2", "run.eval_clips=2", "run.video_clips=1", "run.tensorboard=false", "run.checkpoint_every=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(script, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args]


def test_ranks_get_rank_zeros_directory_and_dist_settings_come_from_the_command_line():
    assert shared_dir_overrides(["x=1"], "2026-01-02/03-04-05", rank=0) == ["hydra.run.dir=outputs/2026-01-02/03-04-05", "hydra.sweep.dir=multirun/2026-01-02/03-04-05"]
    assert shared_dir_overrides(["hydra.run.dir=/r", "hydra.sweep.dir=/s"], "t", rank=1) == ["hydra.output_subdir=null"]
    assert dist_settings(["dist.timeout_s=7", "grpo.lr=1"]).timeout_s == 7.0
    try:
        dist_settings(["dist.timeoutt=7"])
    except Exception as err:  # a typo is an error, as in Hydra
        assert "timeoutt" in str(err)
    else:
        raise AssertionError("a misspelt dist.* override was accepted")


def test_fsdp2_job_on_two_processes_shares_one_run_dir_and_resumes_on_one(tmp_path):
    proc = subprocess.run(torchrun(GRPO, *TINY, "parallel=fsdp2", "run.iterations=2", "lr_schedule.total_iters=3"), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # both ranks wrote into rank 0's directory
    run = runs[0]
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 2  # header + 2 iterations, rank 0 only
    assert (run / "checkpoints" / "ckpt-00000002" / "policy.safetensors").is_file() and (run / "eval.md").is_file()
    # the checkpoint of the sharded 2-process run continues on 1 process
    one = subprocess.run([sys.executable, str(GRPO), *TINY, f"hydra.run.dir={run}", "run.iterations=3", "lr_schedule.total_iters=3"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resumed from iteration 2" in one.stdout
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 3
    assert (run / "checkpoints" / "ckpt-00000003").is_dir()


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_killed_rank_ends_the_ddp_job_with_an_error_and_it_resumes(tmp_path):
    run = tmp_path / "run"
    job = subprocess.Popen(torchrun(GRPO, *TINY, "parallel=ddp", "dist.timeout_s=30", f"hydra.run.dir={run}", "run.iterations=100", "lr_schedule.total_iters=100"), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "ckpt-00000001").exists():
        assert job.poll() is None and time.time() < deadline, "job ended or stalled before its first checkpoint"
        time.sleep(0.2)
    workers = worker_pids(job.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    start = time.time()
    try:
        output, _ = job.communicate(timeout=90)  # an error, not a hang
    except subprocess.TimeoutExpired:
        job.kill()
        raise AssertionError("the job hung after one rank was killed")
    assert job.returncode != 0
    assert time.time() - start < 90
    assert "ChildFailedError" in output or "DistributedJobError" in output, output[-3000:]
    # the job resumes from its last checkpoint
    done = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("ckpt-"))[-1]
    last = int(done.split("-")[1])
    again = subprocess.run(torchrun(GRPO, *TINY, "parallel=ddp", f"hydra.run.dir={run}", f"run.iterations={last + 1}", "lr_schedule.total_iters=100"), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from iteration {last}" in again.stdout


HUNG = """
    import time, torch
    from examples.common.launch import failing_clearly
    from rldiff import distributed as dist_utils

    dist_utils.init_from_env(timeout_s=3)
    with failing_clearly(3):
        if dist_utils.rank() == 1:
            time.sleep(120)  # hangs: never joins the all-reduce
        dist_utils.all_reduce_mean_(torch.ones(1))
"""


def test_hung_rank_fails_the_job_within_the_timeout(tmp_path):
    script = tmp_path / "hung.py"
    script.write_text(textwrap.dedent(HUNG))
    env = ENV
    start = time.time()
    proc = subprocess.run(torchrun(script), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode != 0
    assert time.time() - start < 100  # the hung rank sleeps 120 s: the 3 s timeout ended the job
    assert "DistributedJobError: rank 0 of 2: a collective failed" in proc.stderr and "dist.timeout_s=3" in proc.stderr, proc.stderr[-3000:]


DISTILL_TINY = [
    "dim=32", "heads=2", "layers=1", "batch_size=2", "teacher_iterations=2", "distill_iterations=3",
    "generator_every=2", "checkpoint_every=1", "eval_clips=2", "teacher_eval_steps=2", "tensorboard=false",
]  # fmt: skip


def test_fsdp2_distillation_on_two_processes_resumes_on_one(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(torchrun(ROOT / "examples" / "ar_drag_distill.py", *DISTILL_TINY, "parallel=fsdp2", f"hydra.run.dir={run}"), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "student" / "config.json").is_file() and (run / "eval.md").is_file()
    assert "rldiff.parallel.FSDP2" in (run / ".hydra" / "config.yaml").read_text()
    assert len((run / "logs" / "distill" / "metrics.csv").read_text().strip().splitlines()) == 1 + 3  # rank 0 logs
    one = subprocess.run([sys.executable, str(ROOT / "examples" / "ar_drag_distill.py"), *DISTILL_TINY, f"hydra.run.dir={run}", "distill_iterations=4"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "distill: resumed from iteration 3" in one.stdout  # the sharded run's checkpoint holds full tensors
    assert (run / "distill_ckpt" / "ckpt-00000004").is_dir()
