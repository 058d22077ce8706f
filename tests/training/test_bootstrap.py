"""Bootstrap intervals: coverage on a known case, paired vs unpaired ratios, determinism, seed pooling."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.bootstrap import (
    interval,
    percentile_interval,
    ratio_interval,
    resample_weights,
    seed_pooled_interval,
    weighted_means,
)


def _mean(means):
    return means["x"]


def test_interval_of_a_mean_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, covered = 200, 0
    for trial in range(trials):
        sample = rng.normal(loc=2.0, scale=1.0, size=40)
        found = interval({"x": sample}, _mean, resamples=500, seed=trial)
        assert found.low < found.point < found.high and found.point == pytest.approx(sample.mean())
        covered += found.contains(2.0)
    # percentile bootstrap of a mean at n = 40: nominal 95 %, a little under in practice
    assert 0.88 <= covered / trials <= 0.99


def test_weights_resample_whole_trajectories_and_reproduce_with_a_seed():
    weights = resample_weights(7, 300, seed=5)
    assert weights.shape == (300, 7) and np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights * 7, np.round(weights * 7))  # counts of draws, divided by n
    np.testing.assert_array_equal(weights, resample_weights(7, 300, seed=5))
    assert not np.array_equal(weights, resample_weights(7, 300, seed=6))
    values = np.arange(14.0).reshape(7, 2)
    np.testing.assert_allclose(weighted_means({"v": values}, weights)["v"], weights @ values)


def test_paired_ratio_cancels_shared_difficulty_and_unpaired_does_not():
    rng = np.random.default_rng(1)
    difficulty = rng.lognormal(sigma=1.0, size=40)  # some test trajectories are much harder than others
    method = {"x": difficulty * (0.9 + 0.02 * rng.normal(size=40))}
    baseline = {"x": difficulty * (1.0 + 0.02 * rng.normal(size=40))}
    paired = ratio_interval(method, _mean, baseline, _mean, seed=3)
    unpaired = ratio_interval(method, _mean, baseline, _mean, paired=False, seed=3)
    assert paired.point == unpaired.point == pytest.approx(method["x"].mean() / baseline["x"].mean())
    assert paired.high < 1.0 and paired.contains(0.9)  # the 10 % gain is resolved when paired
    assert unpaired.contains(1.0)  # and drowned in the trajectory-to-trajectory spread when not
    assert (paired.high - paired.low) < 0.2 * (unpaired.high - unpaired.low)
    again = ratio_interval(method, _mean, baseline, _mean, seed=3)
    assert (again.low, again.high) == (paired.low, paired.high)
    with pytest.raises(ValueError, match="same trajectories"):
        ratio_interval(method, _mean, {"x": np.ones(5)}, _mean)


def test_seed_pooling_adds_seed_to_seed_spread():
    rng = np.random.default_rng(2)
    base = rng.normal(1.0, 0.1, size=30)
    same = seed_pooled_interval([{"x": base}] * 3, _mean, seed=4)
    single = interval({"x": base}, _mean, seed=4)
    assert same.point == pytest.approx(single.point)
    assert (same.low, same.high) == pytest.approx((single.low, single.high))  # identical seeds: no seed spread
    spread = seed_pooled_interval([{"x": base + shift} for shift in (-0.3, 0.0, 0.3)], _mean, seed=4)
    assert spread.point == pytest.approx(base.mean())
    assert (spread.high - spread.low) > 3 * (single.high - single.low)
    with pytest.raises(ValueError, match="different numbers"):
        seed_pooled_interval([{"x": base}, {"x": base[:10]}], _mean)


def test_infinite_ratios_stay_as_bounds_and_nan_is_dropped():
    samples = np.array([1.0, 2.0, 3.0, np.inf, np.inf, np.nan])
    found = percentile_interval(2.0, samples, 0.5)
    assert found.low == 2.0 and found.high == np.inf
    assert np.isnan(percentile_interval(1.0, np.array([np.nan]), 0.95).low)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(1.0, samples, 1.5)
