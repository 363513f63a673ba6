"""rldiff.metrics: Frechet distance against closed-form Gaussians, statistics cache, motion smoothness by hand, latency with a fake clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rldiff.metrics import (
    blend_interpolate,
    feature_statistics,
    frechet_distance,
    frechet_distance_of,
    load_statistics,
    mean_interval,
    measure_latency,
    motion_smoothness,
    save_statistics,
)


def rotation(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def test_frechet_of_diagonal_gaussians_by_hand():
    # diagonal: sum_i (mu1_i - mu2_i)^2 + (s1_i^(1/2) - s2_i^(1/2))^2
    # mu diff (1, 2) -> 5; variances (1, 4) vs (4, 9): (1 - 2)^2 + (2 - 3)^2 = 2; total 7
    mu1, mu2 = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0])
    s1, s2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([4.0, 9.0]))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(7.0, abs=1e-9)


def test_frechet_of_non_commuting_covariances_by_hand():
    # sigma1 = I, sigma2 = R diag(4, 1) R^T: tr sqrt(sigma1 sigma2) = tr sqrt(sigma2) = 2 + 1 = 3,
    # tr sigma1 + tr sigma2 = 2 + 5, so the distance is 7 - 6 = 1 (and symmetric)
    r = rotation(0.7)
    s1, s2 = torch.eye(2, dtype=torch.float64), r @ torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)) @ r.T
    mu = torch.zeros(2)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(1.0, abs=1e-9)
    # two general covariances: symmetric in its arguments, and equal to the commuting formula after a shared rotation
    a = r @ torch.diag(torch.tensor([3.0, 0.5], dtype=torch.float64)) @ r.T
    b = rotation(-0.3) @ torch.diag(torch.tensor([2.0, 1.5], dtype=torch.float64)) @ rotation(-0.3).T
    assert frechet_distance(mu, a, mu, b) == pytest.approx(frechet_distance(mu, b, mu, a), abs=1e-9)
    # an independent route: tr sqrt(AB) = sum of the square roots of AB's (real, positive) eigenvalues
    eig = np.linalg.eigvals(a.numpy() @ b.numpy()).real
    expected = float(np.trace(a.numpy()) + np.trace(b.numpy()) - 2 * np.sqrt(eig).sum())
    assert frechet_distance(mu, a, mu, b) == pytest.approx(expected, abs=1e-9)


def test_identical_sets_are_at_zero_and_samples_converge_to_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g)
    assert frechet_distance_of(x, x.clone()) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_of(x, x[torch.randperm(500, generator=g)]) == pytest.approx(0.0, abs=1e-9)  # order does not matter
    # N(0, I) vs N(1, 4 I) in D = 2: mean term 2, covariance term 2 * (1 - 2)^2 = 2 -> 4
    a = torch.randn(200_000, 2, generator=g)
    b = 1.0 + 2.0 * torch.randn(200_000, 2, generator=g)
    assert frechet_distance_of(a, b) == pytest.approx(4.0, abs=0.05)


def test_feature_statistics_match_numpy_and_reject_bad_input():
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    mu, sigma = feature_statistics(x)
    assert mu.dtype == torch.float64
    assert np.allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False))
    with pytest.raises(ValueError, match=r"\[N, D\] with N >= 2"):
        feature_statistics(torch.randn(1, 5))
    with pytest.raises(ValueError, match="non-finite"):
        feature_statistics(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(mu, sigma, mu[:3], sigma)


def test_statistics_cache_round_trip_and_mismatch(tmp_path):
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(2))
    mu, sigma = feature_statistics(x)
    path = save_statistics(tmp_path / "ref.npz", mu, sigma, 30, "sprites heldout 30 / sprites_frames")
    mu2, sigma2, count = load_statistics(path, "sprites heldout 30 / sprites_frames")
    assert torch.equal(mu, mu2) and torch.equal(sigma, sigma2) and count == 30
    with pytest.raises(ValueError, match="delete it to recompute"):
        load_statistics(path, "another benchmark")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        load_statistics(tmp_path / "bad.npz")


def test_motion_smoothness_by_hand():
    # grey frames 0, 10, 30, 30, 30 (/255): odd frame 1 rebuilt as (0 + 30) / 2 = 15 (5 off), odd frame 3 as 30 (exact)
    # -> mean abs difference 2.5 / 255, score 1 - 2.5/255
    levels = torch.tensor([0.0, 10.0, 30.0, 30.0, 30.0]) / 255
    video = levels.view(1, 5, 1, 1, 1).expand(1, 5, 3, 4, 4)  # [B, T, 3, H, W]
    assert float(motion_smoothness(video, blend_interpolate)[0]) == pytest.approx(1 - 2.5 / 255, abs=1e-6)
    # a linear ramp is perfectly smooth for the blend; a static video for any interpolator returning a neighbour
    ramp = (torch.arange(7.0) * 20 / 255).view(1, 7, 1, 1, 1).expand(2, 7, 3, 4, 4)
    assert torch.allclose(motion_smoothness(ramp, blend_interpolate), torch.ones(2))
    static = torch.rand(1, 1, 3, 4, 4).expand(1, 6, 3, 4, 4)
    assert float(motion_smoothness(static, lambda a, b: a)[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="interpolate returned"):
        motion_smoothness(ramp, lambda a, b: a[:, :1])
    with pytest.raises(ValueError, match="T >= 3"):
        motion_smoothness(ramp[:, :2], blend_interpolate)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_latency_with_a_fake_clock():
    clock = FakeClock()
    durations = iter([(5.0, 5.0)] + [(0.5, 0.1), (0.7, 0.1), (0.4, 0.2)])  # warm-up run, then 3 timed runs (first frame, per frame)
    synced = []

    def stream():
        first, per = next(durations)
        clock.now += first
        yield "frame 0"
        for i in range(4):
            clock.now += per
            yield f"frame {i + 1}"

    lat = measure_latency(stream, warmup=1, repeats=3, clock=clock, sync=lambda: synced.append(1))
    # first-frame: median(0.5, 0.7, 0.4) = 0.5; fps: 4 frames / (4 * per) -> 10, 10, 5 -> median 10
    # total: 0.9, 1.1, 1.2 -> 1.1; the slow warm-up run is not counted
    assert lat.first_frame_s == pytest.approx(0.5)
    assert lat.fps == pytest.approx(10.0)
    assert lat.total_s == pytest.approx(1.1)
    assert lat.runs == 3 and len(synced) == 3 * 6  # before the start and after every item of each timed run
    with pytest.raises(ValueError, match="yielded nothing"):
        measure_latency(lambda: iter(()), warmup=0, repeats=1, clock=clock)
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(stream, repeats=0)


def test_mean_interval_by_hand():
    # mean 2, sample std 1, t_{0.975, 2} = 4.303 -> half-width 4.303 / sqrt(3)
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(mean_interval([1.5])[1])
