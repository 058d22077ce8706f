"""Per-method metric records, paired ratios, and the evaluation report files.

The numbers come from `training.evaluation.scoring` (per-trajectory components, one bootstrap for all
methods); the pictures from `training.evaluation.plots`. This module gathers them per method, chooses which
ratios to report, and writes metrics.json, metrics.md, per_trajectory.npz and the PNGs.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.evaluation import plots
from training.evaluation.bootstrap import Components
from training.evaluation.metrics import FREQUENCY_BANDS
from training.evaluation.scoring import Scored, Scorer, ScoringSpec
from training.run.paths import atomic_write_bytes, atomic_write_json

PDEBENCH_NAMES = ("pdebench_nRMSE", "pdebench_RMSE", "pdebench_cRMSE", "pdebench_bRMSE",
                  *(f"pdebench_fRMSE_{band}" for band in FREQUENCY_BANDS), "pdebench_nRMSE_with_context")
ENSEMBLE_NAMES = ("ensemble_rollout_nrmse", "pdebench_nRMSE_ensmean", "crps", "spread_skill")
TEACHER = "operator+diffusion"


@dataclass
class MethodMetrics:
    name: str
    evaluations_per_step: int
    one_step_nrmse: float
    rollout_nrmse: float
    last_frame_nrmse: float
    correlation_time: dict[str, float]  # threshold -> time (physical units) the correlation stays above it
    frmse: dict[str, float]  # low / mid / high spatial-frequency bands, over the rollout
    correlation_dropped: dict[str, bool] = field(default_factory=dict)  # False: never dropped (lower bound)
    nrmse_vs_lead: list[float] = field(default_factory=list)  # per predicted frame 1..S
    wall_s: float = 0.0
    pdebench: dict[str, float] = field(default_factory=dict)  # PDEBench's protocol, its names
    pdearena_corr_steps: dict[str, float] = field(default_factory=dict)  # threshold -> pdearena's count
    stochastic: bool = False
    ensemble: dict[str, float] = field(default_factory=dict)  # members, ensemble-mean nRMSE, CRPS, spread/skill
    intervals: dict[str, list[float]] = field(default_factory=dict)  # metric -> [low, high] (bootstrap)

    def scalars(self) -> dict[str, float]:
        out = {"one_step_nrmse": self.one_step_nrmse, "rollout_nrmse": self.rollout_nrmse,
               "last_frame_nrmse": self.last_frame_nrmse, "evaluations_per_step": float(self.evaluations_per_step)}
        out.update({f"corr_time_{k}": v for k, v in self.correlation_time.items()})
        out.update({f"pdearena_corr_steps_{k}": v for k, v in self.pdearena_corr_steps.items()})
        out.update({f"frmse_{k}": v for k, v in self.frmse.items()})
        out.update(self.pdebench)
        out.update(self.ensemble)
        return out

    def summary_line(self) -> str:
        corr = self.correlation_time.get("0.9", math.nan)
        pdebench = self.pdebench.get("pdebench_nRMSE", math.nan)
        return (f"{self.name}: one-step nRMSE {self.one_step_nrmse:.4e}, rollout nRMSE {self.rollout_nrmse:.4e}, "
                f"last-frame nRMSE {self.last_frame_nrmse:.4e}, pdebench_nRMSE {pdebench:.4e}, corr. time "
                f"(rho>0.9) {corr:.3g}, NFE/step {self.evaluations_per_step}")


def method_metrics(name: str, scored: Scored, scorer: Scorer, spec: ScoringSpec, *, nrmse_vs_lead: list[float],
                   evaluations_per_step: int, members: int, stochastic: bool, max_error: float,
                   wall_s: float) -> MethodMetrics:
    """The record of one method from its scored statistics (`max_error`: PDEBench's, no interval)."""
    p = scored.point
    thresholds = [f"{t:g}" for t in spec.thresholds]
    horizon = len(nrmse_vs_lead) * spec.dt
    ensemble = {name_: p[name_] for name_ in ENSEMBLE_NAMES} if stochastic else {}
    if stochastic:
        ensemble["members"] = float(members)
    reported = ["one_step_nrmse", "rollout_nrmse", "last_frame_nrmse", *(f"corr_time_{t}" for t in thresholds),
                *(f"pdearena_corr_steps_{t}" for t in thresholds), *(f"frmse_{b}" for b in FREQUENCY_BANDS),
                *PDEBENCH_NAMES, *(ENSEMBLE_NAMES if stochastic else ())]
    intervals = {}
    for key in reported:
        found = scorer.interval(scored, key)
        intervals[key] = [found.low, found.high]
    return MethodMetrics(
        name=name, evaluations_per_step=evaluations_per_step,
        one_step_nrmse=p["one_step_nrmse"], rollout_nrmse=p["rollout_nrmse"], last_frame_nrmse=p["last_frame_nrmse"],
        correlation_time={t: p[f"corr_time_{t}"] for t in thresholds},
        correlation_dropped={t: bool(p[f"corr_time_{t}"] < horizon - spec.dt / 2) for t in thresholds},
        frmse={b: p[f"frmse_{b}"] for b in FREQUENCY_BANDS},
        nrmse_vs_lead=[float(v) for v in nrmse_vs_lead],
        wall_s=round(wall_s, 3),
        pdebench={**{k: p[k] for k in PDEBENCH_NAMES}, "pdebench_maxError": max_error},
        pdearena_corr_steps={t: p[f"pdearena_corr_steps_{t}"] for t in thresholds},
        stochastic=stochastic, ensemble=ensemble, intervals=intervals,
    )


@dataclass(frozen=True)
class Comparison:
    """metric(method) / metric(baseline) with its paired bootstrap interval."""

    method: str
    baseline: str
    metric: str
    ratio: float
    low: float
    high: float
    level: float


def comparison_plan(names: list[str], declared: dict[str, str | None], thresholds: tuple[float, ...],
                    stochastic: dict[str, bool]) -> list[tuple[str, str, str]]:
    """(method, baseline, metric) triples to report: the operator against persistence and the FNO, every
    refinement of the operator against the operator, the students against their teacher, and any method
    against the baseline it declares (`Surrogate.baseline`)."""
    corr = f"corr_time_{(0.9 if 0.9 in thresholds else thresholds[0]):g}"
    main = ("pdebench_nRMSE", "rollout_nrmse", corr)
    present = set(names)
    plan: list[tuple[str, str, str]] = []

    def add(method: str, baseline: str, metrics: tuple[str, ...]) -> None:
        if method in present and baseline in present and method != baseline:
            plan.extend((method, baseline, metric) for metric in metrics if (method, baseline, metric) not in plan)

    add("operator", "persistence", ("one_step_nrmse", *main))
    add("operator", "fno", main)
    for name in names:
        extra = ("pdebench_nRMSE_ensmean", "crps") if stochastic.get(name) else ()
        if declared.get(name):
            add(name, str(declared[name]), (*main, "pdebench_fRMSE_high", *extra))
        if name.startswith("operator+"):
            add(name, "operator", (*main, "pdebench_fRMSE_high", *extra))
        if "student" in name:
            add(name, TEACHER, (*main, *extra))
    return plan


def comparisons(plan: list[tuple[str, str, str]], scored: dict[str, Scored], scorer: Scorer) -> list[Comparison]:
    out = []
    for method, baseline, metric in plan:
        found = scorer.ratio(scored[method], scored[baseline], metric)
        out.append(Comparison(method, baseline, metric, found.point, found.low, found.high, found.level))
    return out


NOT_SAVED = ("power",)  # our protocol's error spectra [N, S, K]: the largest, and no bench aim reads them


def save_components(path: Path, components: dict[str, Components]) -> Path:
    """The per-trajectory components (float32) that the numbers were computed from, for seed pooling
    (all but NOT_SAVED; PDEBench's spectra stay, for its fRMSE bands)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{method}/{key}": np.asarray(value, dtype=np.float32)
                                   for method, parts in components.items() for key, value in parts.items()
                                   if key not in NOT_SAVED})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_components(path: Path) -> dict[str, Components]:
    out: dict[str, Components] = {}
    with np.load(path) as data:
        for key in data.files:
            method, name = key.split("/", 1)
            out.setdefault(method, {})[name] = data[key].astype(np.float64)
    return out


def write_reports(folder: Path, results: dict[str, MethodMetrics], ratios: list[Comparison],
                  rollouts: dict[str, torch.Tensor], truth: torch.Tensor, x: torch.Tensor, dt: float,
                  extra: dict[str, Any], *, components: dict[str, Components] | None = None,
                  plots_enabled: bool = True) -> list[Path]:
    """metrics.json, metrics.md, per_trajectory.npz and (optionally) PNGs; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "metrics.json", folder / "metrics.md"
    atomic_write_json(json_path, {"methods": {name: asdict(m) for name, m in results.items()},
                                  "comparisons": [asdict(c) for c in ratios], **extra})
    atomic_write_bytes(md_path, markdown_table(results, ratios, extra).encode())
    files = [json_path, md_path]
    if components is not None:
        files.append(save_components(folder / "per_trajectory.npz", components))
    if not plots_enabled:
        return files
    times = torch.arange(truth.shape[1], dtype=torch.float64) * dt
    for name, rollout in rollouts.items():
        if name == "persistence":
            continue
        files.append(plots.plot_spacetime(truth[0], rollout[0], x, times, folder / f"spacetime_{_slug(name)}.png",
                                          title=f"{name}: test trajectory 0"))
    leads = times[1:]
    files.append(plots.plot_error_vs_lead({n: m.nrmse_vs_lead for n, m in results.items()}, leads,
                                          folder / "error_vs_lead.png", ylabel="rollout nRMSE (test)",
                                          title="error vs lead time"))
    return files


def _slug(name: str) -> str:
    return name.replace("+", "_")


def _cell(value: float, bounds: list[float] | None, digits: str = ".3e") -> str:
    if bounds is None or not all(math.isfinite(b) for b in bounds):
        return format(value, digits)
    return f"{value:{digits}} [{bounds[0]:{digits}}, {bounds[1]:{digits}}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def markdown_table(results: dict[str, MethodMetrics], ratios: list[Comparison], extra: dict[str, Any]) -> str:
    """The evaluation report: our protocol, PDEBench's, the stochastic scores and the ratios, each value
    with its 95 % paired-bootstrap interval over test trajectories in brackets."""
    methods = list(results.values())
    thresholds = list(methods[0].correlation_time) if methods else []
    level = extra.get("confidence_level", 0.95)
    ours = [[m.name, str(m.evaluations_per_step), _cell(m.one_step_nrmse, m.intervals.get("one_step_nrmse")),
             _cell(m.rollout_nrmse, m.intervals.get("rollout_nrmse")),
             _cell(m.last_frame_nrmse, m.intervals.get("last_frame_nrmse")),
             *(_cell(m.correlation_time[t], m.intervals.get(f"corr_time_{t}"), ".3g") for t in thresholds),
             *(_cell(m.frmse.get(b, math.nan), m.intervals.get(f"frmse_{b}")) for b in FREQUENCY_BANDS),
             f"{m.wall_s:.2f}"] for m in methods]
    lines = ["# Evaluation (physical space, test split)", "",
             f"Values with their {level:.0%} bootstrap interval over test trajectories in brackets "
             f"({extra.get('bootstrap_resamples')} resamples, paired across methods).", "",
             f"## Ours: from frame 0, {extra.get('rollout_steps')} predicted frames", "",
             *_table(["method", "NFE/step", "one-step nRMSE", "rollout nRMSE", "last-frame nRMSE",
                      *(f"corr. time ρ>{t}" for t in thresholds), "fRMSE low", "fRMSE mid", "fRMSE high", "wall s"],
                     ours)]
    spec = extra.get("scoring", {})
    pdebench = [[m.name, *(_cell(m.pdebench.get(k, math.nan), m.intervals.get(k)) for k in PDEBENCH_NAMES),
                 f"{m.pdebench.get('pdebench_maxError', math.nan):.3e}",
                 *(_cell(m.pdearena_corr_steps[t], m.intervals.get(f"pdearena_corr_steps_{t}"), ".3g")
                   for t in thresholds)] for m in methods]
    lines += ["", f"## PDEBench protocol: {spec.get('initial_step')} context frames, frames "
              f"{spec.get('initial_step')}..{(spec.get('frames') or 0) - 1} predicted; pdearena correlation steps",
              "", *_table([*("method", *PDEBENCH_NAMES), "pdebench_maxError",
                           *(f"pdearena_corr_steps_{t}" for t in thresholds)], pdebench)]
    stochastic = [m for m in methods if m.stochastic]
    if stochastic:
        rows = [[m.name, f"{m.ensemble.get('members', 0):.0f}", _cell(m.rollout_nrmse, m.intervals.get("rollout_nrmse")),
                 *(_cell(m.ensemble[k], m.intervals.get(k), ".3g" if k == "spread_skill" else ".3e")
                   for k in ENSEMBLE_NAMES)] for m in stochastic]
        lines += ["", "## Stochastic methods: single sample vs ensemble (spread/skill 1 = calibrated)", "",
                  *_table(["method", "members", "single-sample rollout nRMSE", "ensemble-mean rollout nRMSE",
                           "pdebench_nRMSE ensemble mean", "CRPS", "spread/skill"], rows)]
    if ratios:
        rows = [[c.method, c.baseline, c.metric, _cell(c.ratio, [c.low, c.high], ".3g")] for c in ratios]
        lines += ["", "## Ratios (method / baseline, paired bootstrap over test trajectories)", "",
                  *_table(["method", "baseline", "metric", "ratio [interval]"], rows)]
    notes = [f"- test trajectories: {extra.get('test_trajectories')}, rollout steps: {extra.get('rollout_steps')}, "
             f"dt: {extra.get('dt')}",
             f"- autoencoder reconstruction nRMSE (test): {extra.get('autoencoder_recon_nrmse_test', math.nan):.3e}"]
    return "\n".join([*lines, "", *notes, ""])
