"""Every reported number of a method as a statistic of per-trajectory components, with its interval.

`score_components` turns one method's predictions into per-trajectory pieces (first axis: test
trajectory); `statistics` names every metric as a function of their means over trajectories. One set of
bootstrap weights (fixed seed) is drawn per evaluation and shared by all methods, so each method's
interval and every ratio between two methods come from the same resampled test sets: ratios are paired.
The components are saved (`metrics/per_trajectory.npz`) so the bench can pool seeds the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.evaluation import ensemble
from training.evaluation.bootstrap import (
    Components,
    Interval,
    percentile_interval,
    resample_weights,
    weighted_means,
)
from training.evaluation.metrics import (
    FREQUENCY_BANDS,
    as_numpy,
    correlation_frames,
    nrmse_per_sample,
    pdearena_correlation_steps,
    pearson_per_sample,
)
from training.evaluation.pdebench import PDEBENCH_INPUTS, pdebench_components, pdebench_from_means


@dataclass(frozen=True)
class ScoringSpec:
    """What the statistics need besides the components; written to metrics.json as `scoring`."""

    dt: float
    length: float  # periodic domain length (PDEBench's Lx)
    n_points: int
    thresholds: tuple[float, ...]
    initial_step: int  # PDEBench context frames
    frames: int  # frames of a test trajectory in the PDEBench protocol

    def as_dict(self) -> dict:
        return {"dt": self.dt, "length": self.length, "n_points": self.n_points, "thresholds": list(self.thresholds),
                "initial_step": self.initial_step, "frames": self.frames}

    @classmethod
    def from_dict(cls, raw: dict) -> ScoringSpec:
        return cls(float(raw["dt"]), float(raw["length"]), int(raw["n_points"]), tuple(raw["thresholds"]),
                   int(raw["initial_step"]), int(raw["frames"]))


def score_components(rollouts, truth, one_step, trajectories, pdebench_rollouts, initial_step: int) -> Components:
    """Per-trajectory components of one method.

    rollouts [M, N, S + 1, X] from frame 0 (member 0 is the single-sample forecast; M = 1 if deterministic),
    truth [N, S + 1, X]; one_step [N, S, X] predicted from the true frames 0..S-1 of truth; whole test
    trajectories [N, T, X] and pdebench_rollouts [M, N, T - initial_step + 1, X] started from their frame
    initial_step - 1.
    """
    rollouts, truth, trajectories = as_numpy(rollouts), as_numpy(truth), as_numpy(trajectories)
    pred, true = rollouts[:, :, 1:], truth[:, 1:]  # leads 1..S
    error_power = np.abs(np.fft.rfft(pred[0] - true, axis=-1)) ** 2
    parts: Components = {
        "nrmse_lead": nrmse_per_sample(pred[0], true),  # [N, S]
        "one_step": nrmse_per_sample(one_step, truth[:, 1:]).mean(axis=-1),
        "corr": pearson_per_sample(pred[0], true),  # [N, S]
        "power": error_power,  # [N, S, K]
        "crps": ensemble.crps_per_trajectory(pred, true),
        "ens_nrmse": ensemble.ensemble_mean_nrmse_per_trajectory(pred, true),
        **ensemble.spread_skill_components(pred, true),
    }
    pdebench = as_numpy(pdebench_rollouts)
    context = np.repeat(trajectories[None, :, : initial_step - 1], pdebench.shape[0], axis=0)
    whole = np.concatenate([context, pdebench], axis=2)  # [M, N, T, X]: PDEBench's layout
    parts.update(pdebench_components(whole[0], trajectories, initial_step))
    ensemble_mean = pdebench_components(whole.mean(axis=0), trajectories, initial_step)
    parts["pdebench_ens_nrmse"] = ensemble_mean["pdebench_nrmse"]
    return parts


Reduce = Callable[[Components], np.ndarray]


@dataclass(frozen=True)
class Statistic:
    keys: tuple[str, ...]  # components it reads
    reduce: Reduce  # their trajectory means (each [B, ...]) -> [B]


def _band(low: int, high: int | None, spec: ScoringSpec) -> Reduce:
    """Our fRMSE over the rollout: PDEBench's per-mode RMS over samples, averaged over band and leads."""
    return lambda m: (np.sqrt(m["power"]) / spec.n_points * spec.length)[..., low:high].mean(axis=(-2, -1))


def statistics(spec: ScoringSpec, members: int) -> dict[str, Statistic]:
    """Every metric of a method by its reported name."""
    stats = {
        "one_step_nrmse": Statistic(("one_step",), lambda m: m["one_step"]),
        "rollout_nrmse": Statistic(("nrmse_lead",), lambda m: m["nrmse_lead"].mean(axis=-1)),
        "last_frame_nrmse": Statistic(("nrmse_lead",), lambda m: m["nrmse_lead"][..., -1]),
    }
    for threshold in spec.thresholds:
        stats[f"corr_time_{threshold:g}"] = Statistic(
            ("corr",), lambda m, t=threshold: correlation_frames(m["corr"], t) * spec.dt)
        stats[f"pdearena_corr_steps_{threshold:g}"] = Statistic(
            ("corr",), lambda m, t=threshold: pdearena_correlation_steps(m["corr"], t))
    for band, (low, high) in FREQUENCY_BANDS.items():
        stats[f"frmse_{band}"] = Statistic(("power",), _band(low, high, spec))
    for name, key in PDEBENCH_INPUTS.items():
        stats[name] = Statistic((key,), lambda m, n=name: pdebench_from_means(m, spec.n_points, spec.length)[n])
    fraction = (spec.frames - spec.initial_step) / spec.frames
    stats["pdebench_nRMSE_with_context"] = Statistic(("pdebench_nrmse",), lambda m: m["pdebench_nrmse"] * fraction)
    stats["ensemble_rollout_nrmse"] = Statistic(("ens_nrmse",), lambda m: m["ens_nrmse"])
    stats["pdebench_nRMSE_ensmean"] = Statistic(("pdebench_ens_nrmse",), lambda m: m["pdebench_ens_nrmse"])
    stats["crps"] = Statistic(("crps",), lambda m: m["crps"])
    stats["spread_skill"] = Statistic(("ens_var", "ens_sqerr"), lambda m: ensemble.spread_skill_ratio(
        m["ens_var"], m["ens_sqerr"], members))
    return stats


@dataclass
class Scored:
    """A method's statistics on all trajectories (`point`) and on each bootstrap resample (`samples`)."""

    point: dict[str, float]
    samples: dict[str, np.ndarray] = field(repr=False)


@dataclass
class Scorer:
    """One weight matrix for the whole evaluation (all methods scored on the same resampled test sets)."""

    n: int
    resamples: int
    level: float
    seed: int
    weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.weights = resample_weights(self.n, self.resamples, self.seed)

    def score(self, components: Components, stats: dict[str, Statistic]) -> Scored:
        plain = weighted_means(components, np.full((1, self.n), 1.0 / self.n))
        resampled = weighted_means(components, self.weights)
        return Scored({name: float(s.reduce(plain)[0]) for name, s in stats.items()},
                      {name: np.asarray(s.reduce(resampled), dtype=np.float64) for name, s in stats.items()})

    def interval(self, scored: Scored, name: str) -> Interval:
        return percentile_interval(scored.point[name], scored.samples[name], self.level)

    def ratio(self, method: Scored, baseline: Scored, name: str) -> Interval:
        """Paired: both statistics come from the same resampled trajectories."""
        with np.errstate(divide="ignore", invalid="ignore"):
            point = float(np.float64(method.point[name]) / np.float64(baseline.point[name]))
            return percentile_interval(point, method.samples[name] / baseline.samples[name], self.level)
