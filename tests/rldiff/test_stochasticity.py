"""Stochasticity schedules."""

import pytest
import torch

from rldiff.stochasticity import AllSteps, NoSteps, OneStepPerFrame, ProgressiveWindow, SlidingWindow


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


def steps_of(mask):
    """The stochastic steps of frame 0, checking that every frame has the same ones."""
    assert (mask == mask[0]).all()
    return mask[0].nonzero().flatten().tolist()


@pytest.mark.parametrize("schedule", [AllSteps(), NoSteps(), OneStepPerFrame(), SlidingWindow(window=2)])
def test_every_schedule_takes_an_iteration_keyword(schedule):
    # the ones that do not move with training ignore it: same generator state -> same mask
    assert torch.equal(schedule.mask(4, 5, gen(3), iteration=17), schedule.mask(4, 5, gen(3)))


def test_sliding_window_step_range():
    # N = 6, exclude_last: steps 0..4 allowed; steps=(1, 4) keeps a window of 2 in steps 1..3: starts 1 or 2
    seen = {tuple(steps_of(SlidingWindow(window=2, steps=(1, 4)).mask(3, 6, gen(s)))) for s in range(40)}
    assert seen == {(1, 2), (2, 3)}
    # window = range size: only one place
    assert steps_of(SlidingWindow(window=3, steps=(1, 4)).mask(2, 6, gen(0))) == [1, 2, 3]
    # a list (as Hydra hands it over) works too
    assert SlidingWindow(window=1, steps=[2, 3]).steps == (2, 3)
    assert steps_of(SlidingWindow(window=1, steps=[2, 3]).mask(2, 6, gen(0))) == [2]


def test_sliding_window_step_range_errors():
    with pytest.raises(ValueError, match=r"steps must be a pair \(lo, hi\) .* got \(3, 3\)"):
        SlidingWindow(steps=(3, 3))
    with pytest.raises(ValueError, match=r"steps must be a pair"):
        SlidingWindow(steps=(-1, 2))
    # N = 5, exclude_last: steps 0..3 allowed; (0, 5) reaches step 4, the last one
    with pytest.raises(ValueError, match=r"steps=\(0, 5\) reaches step 4, but num_steps=5 allows steps 0 .. 3 \(the last step is excluded"):
        SlidingWindow(window=2, steps=(0, 5)).mask(2, 5, gen(0))
    assert steps_of(SlidingWindow(window=1, steps=(4, 5), exclude_last=False).mask(2, 5, gen(0))) == [4]
    with pytest.raises(ValueError, match=r"window must lie in \[1, 2\] for steps 1 .. 2"):
        SlidingWindow(window=3, steps=(1, 3)).mask(2, 6, gen(0))


def test_progressive_window_moves_with_iteration_by_hand():
    # N = 5, exclude_last: steps 0..3; window 2, interval 3, stride 1 -> starts 0, 1, 2, 3 (4 places)
    # iterations 0-2: {0, 1}; 3-5: {1, 2}; 6-8: {2, 3}; 9-11: {3} (cut at step 3); 12: back to {0, 1}
    pw = ProgressiveWindow(window=2, interval=3, stride=1)
    expected = [[0, 1]] * 3 + [[1, 2]] * 3 + [[2, 3]] * 3 + [[3]] * 3 + [[0, 1]] * 3
    assert [steps_of(pw.mask(2, 5, iteration=i)) for i in range(15)] == expected
    # no generator needed, and the generator does not matter
    assert torch.equal(pw.mask(2, 5, gen(0), iteration=4), pw.mask(2, 5, gen(9), iteration=4))
    # without roll back it stays at the last place
    stay = ProgressiveWindow(window=2, interval=3, stride=1, roll_back=False)
    assert [steps_of(stay.mask(2, 5, iteration=i)) for i in (9, 12, 300)] == [[3], [3], [3]]


def test_progressive_window_stride_and_range_by_hand():
    # stride = window = 2 (MixGRPO without overlap), N = 5: starts 0, 2 -> {0, 1}, {2, 3}, back to {0, 1}
    pw = ProgressiveWindow(window=2, interval=1, stride=2)
    assert [steps_of(pw.mask(1, 5, iteration=i)) for i in range(3)] == [[0, 1], [2, 3], [0, 1]]
    # steps=(1, 4), N = 6: starts 1, 2, 3 -> {1, 2}, {2, 3}, {3}, back to {1, 2}
    ranged = ProgressiveWindow(window=2, interval=2, steps=(1, 4))
    assert [steps_of(ranged.mask(3, 6, iteration=i)) for i in (0, 1, 2, 4, 6)] == [[1, 2], [1, 2], [2, 3], [3], [1, 2]]
    # AR-Drag's N = 3: steps 0, 1 allowed; window 1 alternates every interval
    ar = ProgressiveWindow(window=1, interval=10)
    assert [steps_of(ar.mask(8, 3, iteration=i)) for i in (0, 9, 10, 19, 20)] == [[0], [0], [1], [1], [0]]


def test_progressive_window_errors():
    with pytest.raises(ValueError, match="ProgressiveWindow: interval must be a positive int, got 0"):
        ProgressiveWindow(interval=0)
    with pytest.raises(ValueError, match="ProgressiveWindow: stride must be a positive int, got 1.5"):
        ProgressiveWindow(stride=1.5)
    with pytest.raises(ValueError, match=r"iteration must be an int >= 0, got -1"):
        ProgressiveWindow().mask(2, 5, iteration=-1)
