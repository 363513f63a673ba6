"""rldiff.checkpoint: every load names its file; shapes and keys are checked; writes are durable and clean up."""

from __future__ import annotations

import os
import re

import pytest
import torch

from rldiff.checkpoint import (
    check_state_shapes,
    checkpoint_iteration,
    latest_checkpoint,
    load_json,
    load_tensors,
    remove_stale_temporaries,
    save_json,
    save_tensors,
    write_checkpoint_dir,
)


def _truncate(path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize("keep", [0.5, 20])
def test_truncated_safetensors_names_the_file(tmp_path, keep):
    path = tmp_path / "policy.safetensors"
    save_tensors(path, {"w": torch.zeros(64)})
    _truncate(path, int(keep * path.stat().st_size) if isinstance(keep, float) else keep)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*safetensors"):
        load_tensors(path)


def test_garbage_json_names_the_file(tmp_path):
    path = tmp_path / "trainer.json"
    path.write_text('{"iteration": 3,')  # cut mid-write
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*JSON"):
        load_json(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_json(path)
    save_json(path, {"iteration": 3})
    assert load_json(path) == {"iteration": 3}


def test_required_keys_are_checked(tmp_path):
    path = tmp_path / "rng.safetensors"
    save_tensors(path, {"torch": torch.zeros(3, dtype=torch.uint8)})  # a valid file without 'shared' and 'local'
    with pytest.raises(KeyError, match=re.escape(str(path)) + r".*\['shared', 'local'\].*holds \['torch'\]"):
        load_tensors(path, required=("shared", "local", "torch"))
    assert set(load_tensors(path, required=("torch",))) == {"torch"}
    path.write_bytes(os.urandom(256))  # garbage bytes: an error with the path, not a KeyError from the caller
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_tensors(path, required=("shared",))


def test_check_state_shapes_names_key_and_shapes():
    expected = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4)}
    check_state_shapes(expected, {"a.weight": torch.ones(4, 3), "a.bias": torch.ones(4)}, "ok")
    with pytest.raises(ValueError, match=r"ckpt-00000002/policy.safetensors: tensor 'a.weight' has shape \(4, 5\), expected \(4, 3\)"):
        check_state_shapes(expected, {"a.weight": torch.ones(4, 5), "a.bias": torch.ones(4)}, "ckpt-00000002/policy.safetensors")
    with pytest.raises(KeyError, match=r"src: state keys do not match: missing \['a.bias'\], unexpected \['b'\]"):
        check_state_shapes(expected, {"a.weight": torch.ones(4, 3), "b": torch.ones(1)}, "src")


def test_save_tensors_fsyncs_file_before_rename_and_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "x.safetensors"
    save_tensors(path, {"w": torch.arange(3.0)})
    i = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(path))
    tmp = events[i][1]
    assert ("fsync", tmp) in events[:i]  # the file's data is on disk before the rename
    assert ("fsync", str(tmp_path)) in events[i + 1 :]  # the rename is on disk after the directory fsync
    assert torch.equal(load_tensors(path)["w"], torch.arange(3.0))


def test_stale_temporaries_are_removed_at_the_next_write(tmp_path):
    root = tmp_path / "ckpts"
    write_checkpoint_dir(root, 1, {"a.safetensors": {"w": torch.zeros(2)}, "trainer.json": {"iteration": 1}})
    stale = [root / ".ckpt-00000002.abc123", root / ".ckpt-00000003.xyz"]  # what killed writes leave
    for p in stale:
        p.mkdir()
        (p / "a.safetensors").write_bytes(b"partial")
    (root / "notes.txt").write_text("kept")  # not a temporary: left alone
    final = write_checkpoint_dir(root, 4, {"trainer.json": {"iteration": 4}})
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-00000001", "ckpt-00000004", "notes.txt"]
    assert latest_checkpoint(root) == final
    stale[0].mkdir()
    assert remove_stale_temporaries(root) == [stale[0]]
    assert not stale[0].exists() and remove_stale_temporaries(root) == []
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_checkpoint_iteration(tmp_path):
    assert checkpoint_iteration(tmp_path / "ckpt-00000012") == 12
    assert checkpoint_iteration("ckpt-00000000") == 0
    for bad in ["ckpt-12", "ckpt-0000001x", ".ckpt-00000001.abc", "model"]:
        with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
            checkpoint_iteration(bad)
    with pytest.raises(ValueError, match="iteration must be an int"):
        write_checkpoint_dir(tmp_path, 10**8, {})
