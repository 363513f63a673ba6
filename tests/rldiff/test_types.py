"""Control validation and batch operations."""

import pytest
import torch

from rldiff.types import Control, check_video


def make(b=2, t=3, k=2, h=8, w=8):
    return Control(
        trajectory=torch.rand(b, t, k, 2),
        visibility=torch.ones(b, t, k, dtype=torch.bool),
        reference=torch.rand(b, 3, h, w),
        prompt=[f"p{i}" for i in range(b)],
    )


def test_index_and_repeat_interleave():
    c = make(b=3)
    r = c.repeat_interleave(2)
    assert r.batch_size == 6 and r.prompt == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert torch.equal(r.trajectory[3], c.trajectory[1])
    sub = c.index(torch.tensor([2, 0]))
    assert sub.prompt == ["p2", "p0"] and torch.equal(sub.reference[0], c.reference[2])
    assert Control.cat([c, sub]).batch_size == 5


def test_errors_name_the_field():
    c = make()
    with pytest.raises(ValueError, match="trajectory contains NaN"):
        c.with_(trajectory=torch.full_like(c.trajectory, float("nan")))
    with pytest.raises(ValueError, match=r"trajectory must be \[B, T, K, 2\]"):
        c.with_(trajectory=torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match="visibility"):
        c.with_(visibility=torch.ones(2, 3, 2))
    with pytest.raises(ValueError, match="normalized coordinates"):
        c.with_(trajectory=c.trajectory + 2.0)
    with pytest.raises(ValueError, match="prompt"):
        c.with_(prompt=["only one"])
    with pytest.raises(IndexError, match="out of range"):
        c.index([5])


def test_invisible_points_may_leave_the_frame():
    c = make()
    traj = c.trajectory.clone()
    traj[0, 1, 0] = torch.tensor([1.4, -0.2])
    vis = c.visibility.clone()
    vis[0, 1, 0] = False
    assert c.with_(trajectory=traj, visibility=vis).batch_size == 2


def test_check_video():
    check_video(torch.rand(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        check_video(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_video(torch.rand(1, 2, 3, 4, 4) * 255)


def test_prompts_must_be_strings():
    c = make(b=3)
    for bad, shown in [([1, 2, 3], "int 1 at index 0"), (["a", None, "c"], "NoneType None at index 1"), (["a", "b", b"c"], "bytes b'c' at index 2")]:
        with pytest.raises(TypeError, match=f"Control.prompt must be a list of B strings, got {shown}"):
            c.with_(prompt=bad)
