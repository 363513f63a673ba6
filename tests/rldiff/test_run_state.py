"""RunState: one save/resume for every loop; damaged checkpoints fail naming the file; load_policy_weights."""

import json

import pytest
import torch
from torch import nn

from rldiff.checkpoint import latest_checkpoint, save_tensors
from rldiff.run_state import RunState, find_checkpoint, load_policy_weights


class Wrapped(nn.Module):
    """Like FlowPolicy: the trained model under ``model.``."""

    def __init__(self, width: int = 3):
        super().__init__()
        self.model = nn.Linear(width, 2)


def make_state(root, width: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    policy = Wrapped(width)
    opt = torch.optim.AdamW(policy.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=4)
    shared, local = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    state = RunState(root, modules={"policy": policy}, optimizers={"policy": opt}, schedulers={"lr": sched},
                     shared_generators={"shared": shared}, local_generators={"local": (local, 2)}, seed=seed)  # fmt: skip
    return state, policy, opt, sched, shared, local


def train_step(policy, opt, sched, shared, local):
    torch.rand(1, generator=shared), torch.rand(1, generator=local)
    policy.model(torch.ones(1, policy.model.in_features)).sum().backward()
    opt.step()
    opt.zero_grad()
    sched.step()


def test_resume_restores_modules_optimizer_schedule_and_streams(tmp_path):
    state, policy, opt, sched, shared, local = make_state(tmp_path)
    assert state.resume() is None  # nothing yet
    for _ in range(2):
        train_step(policy, opt, sched, shared, local)
    state.save(2, meta={"note": "x"})
    after = (policy.model.weight.clone(), opt.param_groups[0]["lr"], torch.rand(1, generator=shared), torch.rand(1, generator=local))

    fresh, policy2, opt2, sched2, shared2, local2 = make_state(tmp_path, seed=5)
    meta = fresh.resume()
    assert meta["iteration"] == 2 and meta["note"] == "x" and meta["world_size"] == 1
    assert torch.equal(policy2.model.weight, after[0]) and opt2.param_groups[0]["lr"] == after[1] == pytest.approx(0.05)
    assert sched2.last_epoch == 2
    assert torch.equal(torch.rand(1, generator=shared2), after[2]) and torch.equal(torch.rand(1, generator=local2), after[3])
    assert sorted(p.name for p in latest_checkpoint(tmp_path).iterdir()) == [
        "optimizer_policy.json", "optimizer_policy.safetensors", "policy.safetensors", "rng.safetensors", "scheduler_lr.json", "state.json",
    ]  # fmt: skip


def test_damaged_checkpoints_fail_naming_the_file_and_what_is_wrong(tmp_path):
    state, policy, opt, sched, shared, local = make_state(tmp_path)
    path = state.save(3)
    meta = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**meta, "iteration": 7}))
    with pytest.raises(ValueError, match=r"state.json says iteration 7, its directory ckpt-00000003 says 3"):
        make_state(tmp_path)[0].resume()
    (path / "state.json").write_text(json.dumps(meta))
    save_tensors(path / "rng.safetensors", {"garbage": torch.zeros(2)})
    with pytest.raises(KeyError, match=r"rng.safetensors.*missing required tensors \['shared/shared', 'local/local', 'torch'\]"):
        make_state(tmp_path)[0].resume()
    state.save(4)  # a good checkpoint again, then a model of another width
    with pytest.raises(ValueError, match=r"policy.safetensors: tensor 'model.weight' has shape \(2, 3\), expected \(2, 5\)"):
        make_state(tmp_path, width=5)[0].resume()


def test_load_policy_weights_from_a_run_a_root_or_a_checkpoint(tmp_path):
    state, policy, *_ = make_state(tmp_path / "run" / "checkpoints")
    path = state.save(1)
    for where in (tmp_path / "run", tmp_path / "run" / "checkpoints", path):
        assert find_checkpoint(where) == path
        weights = load_policy_weights(where)
        assert set(weights) == {"weight", "bias"} and torch.equal(weights["weight"], policy.model.weight)
    assert set(load_policy_weights(path, prefix="")) == {"model.weight", "model.bias"}
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_policy_weights(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"keys outside 'encoder.'"):
        load_policy_weights(path, prefix="encoder.")
