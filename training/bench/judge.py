"""The bench's verdicts: each aim's ratio pooled over training seeds, with an interval, judged by it.

Every seed's evaluate stage leaves `metrics/per_trajectory.npz` (the per-trajectory components of every
number) and `metrics.json` (its scoring spec). A ratio's interval resamples both the seeds and the test
trajectories (`training.evaluation.bootstrap.seed_pooled_interval`; trajectories paired across methods and
seeds, since every seed is scored on the same test split). An aim is met only when its whole interval is on
the right side of the target, missed when the whole interval is on the wrong side, and otherwise
undecided: more seeds or test trajectories are needed to tell.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from training.evaluation.bootstrap import Components, Interval, seed_pooled_interval
from training.evaluation.report import load_components
from training.evaluation.scoring import ScoringSpec, Statistic, statistics

MET, MISSED, UNDECIDED = "met", "missed", "undecided"


@dataclass(frozen=True)
class SeedRun:
    """One seed's evaluation, as the evaluate stage wrote it."""

    seed: int
    metrics: dict
    components: dict[str, Components]

    @classmethod
    def load(cls, seed: int, metrics_dir: Path) -> SeedRun:
        metrics = json.loads((metrics_dir / "metrics.json").read_text())
        return cls(seed, metrics, load_components(metrics_dir / "per_trajectory.npz"))

    def statistic(self, method: str, name: str) -> Statistic:
        spec = ScoringSpec.from_dict(self.metrics["scoring"])
        members = int(self.metrics["methods"][method].get("ensemble", {}).get("members", 1))
        return statistics(spec, members)[name]


@dataclass(frozen=True)
class Aim:
    """metric(method) / metric(baseline) (or metric(method) alone when baseline is None) against a target:
    `<=` target, `>=` target, or `within` (low, high)."""

    name: str
    method: str
    metric: str
    baseline: str | None
    direction: str  # "<=", ">=" or "within"
    target: float | tuple[float, float]


def verdict(found: Interval, direction: str, target: float | tuple[float, float]) -> str:
    """met: the whole interval satisfies the aim; missed: none of it does; undecided otherwise."""
    low, high = found.low, found.high
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED
    if direction == "<=":
        return MET if high <= target else MISSED if low > target else UNDECIDED
    if direction == ">=":
        return MET if low >= target else MISSED if high < target else UNDECIDED
    if direction == "within":
        lo, hi = target  # type: ignore[misc]
        return MET if lo <= low and high <= hi else MISSED if high < lo or low > hi else UNDECIDED
    raise ValueError(f"aim direction must be <=, >= or within, got {direction!r}")


def pooled(runs: list[SeedRun], method: str, metric: str, baseline: str | None, *, resamples: int = 1000,
           level: float = 0.95, seed: int = 0) -> Interval:
    """Mean over seeds of metric(method) [/ metric(baseline)], with the seed-and-trajectory interval."""
    per_seed = []
    for run in runs:
        top = run.statistic(method, metric)
        parts = {f"a/{k}": run.components[method][k] for k in top.keys}
        if baseline is not None:
            bottom = run.statistic(baseline, metric)
            parts.update({f"b/{k}": run.components[baseline][k] for k in bottom.keys})
        per_seed.append(parts)

    def reduce(means: Components):
        a = top.reduce({k: means[f"a/{k}"] for k in top.keys})
        if baseline is None:
            return a
        return a / bottom.reduce({k: means[f"b/{k}"] for k in bottom.keys})

    return seed_pooled_interval(per_seed, reduce, resamples=resamples, level=level, seed=seed)


def default_aims(methods: dict, refiner_target: float = 1.0, refiner_corr_target: float | None = None) -> list[Aim]:
    """The issue's aims for the methods present. Burgers (viscous): a refiner no worse than the operator
    (refiner_target 1.0); a chaotic positive control (KS): <= 0.9 and correlation time >= 1.1x."""
    aims = [Aim("operator one-step nRMSE / persistence", "operator", "one_step_nrmse", "persistence", "<=", 0.1),
            Aim("operator pdebench_nRMSE / FNO", "operator", "pdebench_nRMSE", "fno", "<=", 1.0),
            Aim("operator 40-step rollout nRMSE / FNO", "operator", "rollout_nrmse", "fno", "<=", 1.0)]
    refiners = [("operator+diffusion", "operator")]
    if "pderefiner" in methods:
        refiners.append(("pderefiner", "pderefiner-mse" if "pderefiner-mse" in methods else "operator"))
    for refined, base in refiners:
        if refined not in methods:
            continue
        aims.append(Aim(f"{refined} pdebench_nRMSE / {base}", refined, "pdebench_nRMSE", base, "<=", refiner_target))
        aims.append(Aim(f"{refined} high-band fRMSE / {base}", refined, "pdebench_fRMSE_high", base, "<=", 0.8))
        if refiner_corr_target is not None:
            aims.append(Aim(f"{refined} correlation time (rho>0.9) / {base}", refined, "corr_time_0.9", base, ">=",
                            refiner_corr_target))
    for name in sorted(methods):
        if "student" in name:
            aims.append(Aim(f"{name} pdebench_nRMSE / teacher", name, "pdebench_nRMSE", "operator+diffusion", "<=",
                            1.05))
            aims.append(Aim(f"{name} ensemble-mean pdebench_nRMSE / teacher's", name, "pdebench_nRMSE_ensmean",
                            "operator+diffusion", "<=", 1.05))
            aims.append(Aim(f"{name} pdebench_nRMSE / operator alone", name, "pdebench_nRMSE", "operator", "<=", 1.0))
    for name, record in sorted(methods.items()):
        if record.get("stochastic") and record.get("ensemble", {}).get("members", 1) > 1:
            aims.append(Aim(f"{name} spread/skill", name, "spread_skill", None, "within", (0.7, 1.3)))
    return [a for a in aims if a.method in methods and (a.baseline is None or a.baseline in methods)]


def judge(runs: list[SeedRun], aims: list[Aim], *, resamples: int = 1000, level: float = 0.95) -> list[dict]:
    """One row per aim: the pooled ratio, its interval and the verdict."""
    rows = []
    for aim in aims:
        found = pooled(runs, aim.method, aim.metric, aim.baseline, resamples=resamples, level=level)
        rows.append({"aim": aim.name, "measured": found.point, "low": found.low, "high": found.high,
                     "direction": aim.direction, "target": aim.target, "verdict": verdict(found, aim.direction,
                                                                                          aim.target),
                     "seeds": [run.seed for run in runs]})
    return rows
