"""Percentile bootstrap intervals over test trajectories (and seeds), vectorised and reproducible.

A statistic is a function of means over trajectories of per-trajectory components (`components`, each
[N, ...]); a resample is a weight vector over the N trajectories (multinomial counts / N), so every
resample's means are one matrix product, W [B, N] @ component [N, ...], and nonlinear statistics
(a ratio, an RMS over samples, a correlation-time crossing) are computed per resample afterwards.

Paired: a ratio of two methods on the same test trajectories uses one weight vector for both, so the
trajectory-to-trajectory difficulty that both share cancels (Efron & Tibshirani 1993, ch. 13). The same
fixed seed gives the same intervals on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Components = dict[str, np.ndarray]
Reduce = Callable[[Components], np.ndarray]  # means (each [B, ...]) -> statistic [B]

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate (on all trajectories) with its percentile interval."""

    point: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high, "level": self.level}

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def resample_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[resamples, n] weights, each row the counts of n draws with replacement divided by n."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one trajectory and one resample, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) / n


def weighted_means(components: Components, weights: np.ndarray) -> Components:
    """Means over the trajectory axis under each weight row: {name: [B, ...]}."""
    means = {}
    for name, values in components.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape[0] != weights.shape[1]:
            raise ValueError(f"component {name!r} has {values.shape[0]} trajectories, weights {weights.shape[1]}")
        flat = weights @ values.reshape(values.shape[0], -1)
        means[name] = flat.reshape(weights.shape[0], *values.shape[1:])
    return means


def _trajectories(components: Components) -> int:
    counts = {np.asarray(v).shape[0] for v in components.values()}
    if len(counts) != 1:
        raise ValueError(f"components disagree on the number of trajectories: {sorted(counts)}")
    return counts.pop()


def percentile_interval(point: float, samples: np.ndarray, level: float) -> Interval:
    """The central `level` interval of the resampled values (NaN bounds if there are none)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]  # 0/0; an infinite ratio (x/0) stays and can be a bound
    if samples.size == 0:
        return Interval(point, float("nan"), float("nan"), level)
    tail = (1 - level) / 2
    # with infinities present, bounds are order statistics (no interpolation towards inf - inf)
    method = "linear" if np.isfinite(samples).all() else "inverted_cdf"
    low, high = np.quantile(samples, [tail, 1 - tail], method=method)
    return Interval(point, float(low), float(high), level)


def interval(components: Components, reduce: Reduce, *, resamples: int = DEFAULT_RESAMPLES,
             level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """Bootstrap interval of `reduce` over trajectories (all components resampled together: paired)."""
    n = _trajectories(components)
    point = float(reduce(weighted_means(components, np.full((1, n), 1.0 / n)))[0])
    samples = np.asarray(reduce(weighted_means(components, resample_weights(n, resamples, seed))), dtype=np.float64)
    return percentile_interval(point, samples, level)


def ratio_interval(numerator: Components, reduce_numerator: Reduce, denominator: Components,
                   reduce_denominator: Reduce, *, paired: bool = True, resamples: int = DEFAULT_RESAMPLES,
                   level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """Interval of statistic(numerator) / statistic(denominator). Paired (the default, and the right one
    for two methods on the same test trajectories) draws one set of trajectories for both; unpaired draws
    them independently, which is what the interval would be for two different test sets."""
    n, m = _trajectories(numerator), _trajectories(denominator)
    if paired and n != m:
        raise ValueError(f"a paired ratio needs the same trajectories on both sides, got {n} and {m}")

    def point_of(components: Components, reduce: Reduce, count: int) -> float:
        return float(reduce(weighted_means(components, np.full((1, count), 1.0 / count)))[0])

    point = point_of(numerator, reduce_numerator, n) / point_of(denominator, reduce_denominator, m)
    top = reduce_numerator(weighted_means(numerator, resample_weights(n, resamples, seed)))
    other = seed if paired else seed + 1
    bottom = reduce_denominator(weighted_means(denominator, resample_weights(m, resamples, other)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return percentile_interval(point, np.asarray(top / bottom, dtype=np.float64), level)


def seed_pooled_interval(per_seed: Sequence[Components], reduce: Reduce, *, resamples: int = DEFAULT_RESAMPLES,
                         level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """Mean over training seeds of a statistic, with an interval that resamples both the seeds and the test
    trajectories (one trajectory draw shared by all seeds: every seed is scored on the same test split).
    `reduce` may combine methods (a ratio) when each seed's components hold both."""
    if not per_seed:
        raise ValueError("need the components of at least one seed")
    counts = {_trajectories(c) for c in per_seed}
    if len(counts) != 1:
        raise ValueError(f"seeds were scored on different numbers of test trajectories: {sorted(counts)}")
    n, seeds = counts.pop(), len(per_seed)
    plain = np.full((1, n), 1.0 / n)
    point = float(np.mean([reduce(weighted_means(c, plain))[0] for c in per_seed]))
    weights = resample_weights(n, resamples, seed)
    values = np.stack([np.asarray(reduce(weighted_means(c, weights)), dtype=np.float64) for c in per_seed])  # [S, B]
    seed_draw = np.random.default_rng(seed + 1).multinomial(seeds, np.full(seeds, 1.0 / seeds), size=resamples)
    with np.errstate(invalid="ignore"):
        samples = (seed_draw * values.T).sum(axis=1) / seeds
    return percentile_interval(point, samples, level)
