"""Shock-dominated Burgers (nu = 0.001, configs/burgers_hard.yaml): the solver's default grid is stable there.

Viscous Burgers obeys a maximum principle (max|u| never grows) and never increases total variation; an
under-resolved spectral solve breaks both with Gibbs oscillations at the shocks, so they tell a stable,
resolved grid from one that only looks fine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import load_config
from training.data.generate import GenerationSpec
from training.data.initial_conditions import sample_initial_conditions
from training.data.spectral_solver import solve_burgers

REPO = Path(__file__).resolve().parents[3]
HARD_NU = 0.001
STEEP = [1, 2]  # PDEBench-family draws of seed 0 whose shocks form before t = 0.2 (TV 5.1 and 10.7)


def _growth(solver_resolution: int | None) -> tuple[float, float]:
    """(largest rise of max|u| above max|u0|, largest frame-to-frame rise of TV) over t in [0, 0.2], on the
    solver's own grid (the stored points subsample it and would hide oscillations between them)."""
    spec = GenerationSpec(nu=HARD_NU, resolution=128, solver_resolution=solver_resolution, frames=21)
    u0 = sample_initial_conditions(spec.family, spec.seed, 0, STEEP).evaluate(spec.grid.x)
    u = solve_burgers(u0, HARD_NU, spec.frame_dt, spec.frames, grid=spec.grid, control=spec.control)
    tv = np.abs(u - np.roll(u, 1, axis=-1)).sum(axis=-1)
    return float((np.abs(u).max(axis=-1) - np.abs(u0).max(axis=-1)[:, None]).max()), float(np.diff(tv, axis=1).max())


def test_default_grid_for_nu_0_001_keeps_the_maximum_principle_and_total_variation():
    assert GenerationSpec(nu=HARD_NU, resolution=128).solver_resolution == 4096
    overshoot, tv_rise = _growth(None)
    assert overshoot < 1e-5 and tv_rise < 1e-3, (overshoot, tv_rise)  # measured 0 and -0.004


def test_a_coarser_grid_oscillates_so_the_check_can_fail():
    overshoot, tv_rise = _growth(2048)
    assert tv_rise > 0.05, (overshoot, tv_rise)  # measured 0.23: Gibbs oscillations at the shocks


def test_burgers_hard_config_names_the_hard_dataset():
    cfg = load_config(REPO / "configs" / "burgers_hard.yaml")
    assert cfg.data.equation == "burgers" and cfg.data.nu == HARD_NU
    assert "nu0.001" in cfg.data.remote_prefix
