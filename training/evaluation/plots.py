"""Figures for evaluation reports: space-time maps of truth/prediction/error and error vs lead time.

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global backend switch), so it
works headless and never interferes with a caller's own matplotlib state. Files are written atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.evaluation.metrics import as_numpy


def plot_spacetime(
    true, pred, x, t, path: str | Path, *, title: str = "", cmap: str = "RdBu_r", dpi: int = 110
) -> Path:
    """Truth, prediction and signed error of one trajectory [T, X] as x-t maps (time on the x axis)."""
    true, pred, x, t = as_numpy(true), as_numpy(pred), as_numpy(x), as_numpy(t)
    if true.shape != pred.shape or true.shape != (t.size, x.size):
        raise ValueError(f"need true/pred [T, X] = [{t.size}, {x.size}], got {true.shape} and {pred.shape}")
    figure = Figure(figsize=(13, 3.8), constrained_layout=True)
    axes = figure.subplots(1, 3, sharey=True)
    extent = (float(t[0]), float(t[-1]), float(x[0]), float(x[-1]))
    limit = float(np.abs(true).max()) or 1.0
    error = pred - true
    error_limit = float(np.abs(error).max()) or 1.0
    panels = (
        ("truth", true, limit, cmap),
        ("prediction", pred, limit, cmap),
        ("error (pred - truth)", error, error_limit, "PuOr_r"),
    )
    for ax, (name, field, vmax, colors) in zip(axes, panels, strict=True):
        image = ax.imshow(field.T, origin="lower", aspect="auto", extent=extent, cmap=colors, vmin=-vmax, vmax=vmax)
        ax.set_title(name)
        ax.set_xlabel("t")
        figure.colorbar(image, ax=ax, shrink=0.9)
    axes[0].set_ylabel("x")
    if title:
        figure.suptitle(title)
    return _save(figure, path, dpi)


def plot_error_vs_lead(
    curves: Mapping[str, np.ndarray],
    lead_times,
    path: str | Path,
    *,
    ylabel: str = "nRMSE",
    title: str = "",
    log_scale: bool = True,
    dpi: int = 110,
) -> Path:
    """One line per model: error (e.g. rollout nRMSE) against lead time."""
    lead_times = as_numpy(lead_times)
    if not curves:
        raise ValueError("need at least one curve to plot")
    figure = Figure(figsize=(6.5, 4.2), constrained_layout=True)
    ax = figure.subplots()
    for name, values in curves.items():
        values = as_numpy(values)
        if values.shape != lead_times.shape:
            raise ValueError(f"curve {name!r} has shape {values.shape}, lead times {lead_times.shape}")
        ax.plot(lead_times, values, label=name, linewidth=1.6)
    if log_scale and all(np.all(as_numpy(v) > 0) for v in curves.values()):
        ax.set_yscale("log")
    ax.set_xlabel("lead time")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(figure, path, dpi)


def _save(figure: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp_name, dpi=dpi, format="png")
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
