"""Per-method metric records and the evaluation report files (metrics.json, metrics.md, PNGs).

The numbers come from `training.metrics` (physical-space nRMSE, fRMSE bands, correlation time); the
pictures from `training.plots`. This module only gathers them per method and writes the files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from training import metrics as physical
from training import plots
from training.paths import atomic_write_bytes, atomic_write_json


@dataclass
class MethodMetrics:
    name: str
    evaluations_per_step: int
    one_step_nrmse: float
    rollout_nrmse: float
    last_frame_nrmse: float
    correlation_time: dict[str, float]  # threshold -> time (physical units) where rho first drops below
    frmse: dict[str, float]  # low / mid / high spatial-frequency bands, over the rollout
    correlation_dropped: dict[str, bool] = field(default_factory=dict)  # False: never dropped (lower bound)
    nrmse_vs_lead: list[float] = field(default_factory=list)  # per predicted frame 1..S
    wall_s: float = 0.0

    def scalars(self) -> dict[str, float]:
        out = {"one_step_nrmse": self.one_step_nrmse, "rollout_nrmse": self.rollout_nrmse,
               "last_frame_nrmse": self.last_frame_nrmse, "evaluations_per_step": float(self.evaluations_per_step)}
        out.update({f"corr_time_{k}": v for k, v in self.correlation_time.items()})
        out.update({f"frmse_{k}": v for k, v in self.frmse.items()})
        return out

    def summary_line(self) -> str:
        corr = self.correlation_time.get("0.9", math.nan)
        return (f"{self.name}: one-step nRMSE {self.one_step_nrmse:.4e}, rollout nRMSE {self.rollout_nrmse:.4e}, "
                f"last-frame nRMSE {self.last_frame_nrmse:.4e}, corr. time (rho>0.9) {corr:.3g}, "
                f"NFE/step {self.evaluations_per_step}")


def compute_method_metrics(name: str, rollout: torch.Tensor, truth: torch.Tensor, one_step: torch.Tensor, dt: float,
                           thresholds: list[float], *, evaluations_per_step: int, wall_s: float) -> MethodMetrics:
    """rollout/truth [N, S + 1, X] (frame 0 is the given initial state); one_step [N, T - 1, X]."""
    pred, true = rollout[:, 1:], truth[:, 1:]
    summary = physical.rollout_metrics(pred, true, dt)
    correlation = physical.correlation_times(pred, true, dt, thresholds)
    return MethodMetrics(
        name=name,
        evaluations_per_step=evaluations_per_step,
        one_step_nrmse=physical.one_step_nrmse(one_step, truth),
        rollout_nrmse=summary.nrmse,
        last_frame_nrmse=summary.last_frame_nrmse,
        correlation_time={f"{t:g}": c.time for t, c in correlation.items()},
        correlation_dropped={f"{t:g}": c.dropped for t, c in correlation.items()},
        frmse=dict(summary.frmse),
        nrmse_vs_lead=[float(v) for v in summary.nrmse_by_lead],
        wall_s=round(wall_s, 3),
    )


def write_reports(folder: Path, results: dict[str, MethodMetrics], rollouts: dict[str, torch.Tensor],
                  truth: torch.Tensor, x: torch.Tensor, dt: float, extra: dict[str, Any], *,
                  plots_enabled: bool = True) -> list[Path]:
    """metrics.json, metrics.md and (optionally) PNGs; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "metrics.json", folder / "metrics.md"
    atomic_write_json(json_path, {"methods": {name: asdict(m) for name, m in results.items()}, **extra})
    atomic_write_bytes(md_path, markdown_table(results, extra).encode())
    files = [json_path, md_path]
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


def markdown_table(results: dict[str, MethodMetrics], extra: dict[str, Any]) -> str:
    thresholds = list(next(iter(results.values())).correlation_time) if results else []
    header = (["method", "NFE/step", "one-step nRMSE", "rollout nRMSE", "last-frame nRMSE"]
              + [f"corr. time ρ>{t}" for t in thresholds] + ["fRMSE low", "fRMSE mid", "fRMSE high", "wall s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in results.values():
        cells = [m.name, str(m.evaluations_per_step), f"{m.one_step_nrmse:.3e}", f"{m.rollout_nrmse:.3e}",
                 f"{m.last_frame_nrmse:.3e}"]
        cells += [f"{m.correlation_time[t]:.3g}" for t in thresholds]
        cells += [f"{m.frmse.get(b, math.nan):.3e}" for b in ("low", "mid", "high")]
        cells.append(f"{m.wall_s:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- test trajectories: {extra.get('test_trajectories')}, rollout steps: {extra.get('rollout_steps')}, "
             f"dt: {extra.get('dt')}",
             f"- autoencoder reconstruction nRMSE (test): {extra.get('autoencoder_recon_nrmse_test', math.nan):.3e}"]
    return "\n".join(["# Evaluation (physical space, test split)", "", *lines, "", *notes, ""])
