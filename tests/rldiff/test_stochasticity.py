"""Stochasticity schedules."""

import pytest
import torch

from rldiff.stochasticity import AllSteps, NoSteps, OneStepPerFrame, SlidingWindow


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_one_step_per_frame_exactly_one_and_never_last():
    for seed in range(20):
        mask = OneStepPerFrame().mask(16, 3, gen(seed))
        assert mask.shape == (16, 3) and mask.dtype == torch.bool
        assert torch.equal(mask.sum(dim=1), torch.ones(16, dtype=torch.long))
        assert not mask[:, -1].any()


def test_one_step_per_frame_draws_every_allowed_step():
    counts = torch.zeros(8)
    for seed in range(50):
        counts += OneStepPerFrame().mask(10, 8, gen(seed)).sum(dim=0)
    assert (counts[:7] > 0).all() and counts[7] == 0
    # uniform: 500 draws over 7 steps, each ~71; allow a wide band
    assert counts[:7].min() > 40


def test_one_step_per_frame_include_last():
    seen = torch.zeros(3)
    for seed in range(30):
        seen += OneStepPerFrame(exclude_last=False).mask(4, 3, gen(seed)).sum(dim=0)
    assert seen[-1] > 0


def test_one_step_per_frame_reproducible_from_generator():
    assert torch.equal(OneStepPerFrame().mask(9, 5, gen(3)), OneStepPerFrame().mask(9, 5, gen(3)))


def test_all_and_no_steps():
    assert torch.equal(AllSteps().mask(2, 3), torch.tensor([[True, True, False]] * 2))
    assert AllSteps(exclude_last=False).mask(2, 3).all()
    assert not NoSteps().mask(2, 3).any()


def test_sliding_window():
    for seed in range(10):
        mask = SlidingWindow(window=2).mask(5, 6, gen(seed))
        row = mask[0]
        assert (mask == row).all()  # every frame shares the window
        idx = row.nonzero().flatten()
        assert len(idx) == 2 and idx[1] - idx[0] == 1 and idx[1] < 5


def test_schedule_errors_name_the_problem():
    with pytest.raises(ValueError, match="num_steps=1"):
        OneStepPerFrame().mask(3, 1)
    with pytest.raises(ValueError, match="window"):
        SlidingWindow(window=3).mask(2, 3)
    with pytest.raises(ValueError, match="num_frames"):
        AllSteps().mask(0, 3)
