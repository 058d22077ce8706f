"""Plots are written as real, non-trivial PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from training.evaluation.plots import plot_error_vs_lead, plot_spacetime


def _is_rich_png(path) -> bool:
    image = imread(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 200 and image.std() > 0.05


def test_spacetime_maps(tmp_path):
    x = (np.arange(64) + 0.5) / 64
    t = np.arange(30) * 0.01
    true = np.sin(2 * np.pi * (x[None, :] - t[:, None]))
    path = plot_spacetime(true, true + 0.05 * np.cos(6 * np.pi * x)[None], x, t, tmp_path / "maps" / "s.png",
                          title="sample 0")
    assert path.stat().st_size > 20_000 and _is_rich_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["s.png"]
    with pytest.raises(ValueError, match=r"\[T, X\]"):
        plot_spacetime(true, true[:5], x, t, tmp_path / "bad.png")


def test_error_vs_lead_for_several_models(tmp_path):
    lead = np.arange(1, 51) * 0.01
    curves = {"surrogate": 1e-3 * np.exp(3 * lead), "persistence": 0.1 + lead, "fno": 2e-3 * (1 + lead)}
    path = plot_error_vs_lead(curves, lead, tmp_path / "err.png", title="rollout nRMSE")
    assert path.stat().st_size > 10_000 and _is_rich_png(path)
    with pytest.raises(ValueError, match="shape"):
        plot_error_vs_lead({"a": lead[:3]}, lead, tmp_path / "bad.png")
