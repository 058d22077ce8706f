"""The ETDRK4 spectral solver against closed forms, the exact Cole–Hopf solution and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.cole_hopf import SineSeries, cole_hopf_solution
from training.data.spectral_solver import SolverGrid, StepControl, etdrk4_coefficients, solve_burgers


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_contour_coefficients_match_closed_forms_and_limits():
    h = 0.1
    linear = np.array([0.0, -10.0, -30.0, -50.0, -1e5])
    c = etdrk4_coefficients(linear, h)
    z = h * linear[1:4]  # where the closed forms are well-conditioned
    np.testing.assert_allclose(c.q[1:4], (np.exp(z / 2) - 1) / linear[1:4], rtol=1e-12)
    np.testing.assert_allclose(c.f1[1:4], h * (-4 - z + np.exp(z) * (4 - 3 * z + z**2)) / z**3, rtol=1e-12)
    np.testing.assert_allclose(c.f2[1:4], h * (2 + z + np.exp(z) * (z - 2)) / z**3, rtol=1e-12)
    np.testing.assert_allclose(c.f3[1:4], h * (-4 - 3 * z - z**2 + np.exp(z) * (4 - z)) / z**3, rtol=1e-12)
    # L -> 0: ETDRK4 reduces to classical RK4 weights h/6, h/3 (=2*h/6), h/6 and half step h/2.
    np.testing.assert_allclose([c.q[0], c.f1[0], c.f2[0], c.f3[0]], [h / 2, h / 6, h / 6, h / 6], rtol=1e-13)
    assert np.all(np.isfinite([c.q, c.f1, c.f2, c.f3]))  # very stiff modes stay finite


def test_tiny_amplitude_decays_like_the_heat_equation():
    grid = SolverGrid(64)
    nu, amplitude = 0.05, 1e-9
    u0 = amplitude * np.sin(2 * np.pi * 3 * grid.x)
    frames = solve_burgers(u0[None], nu, 0.1, 6, grid=grid)
    decay = np.exp(-(nu / np.pi) * (2 * np.pi * 3) ** 2 * 0.1 * np.arange(6))
    np.testing.assert_allclose(frames[0], decay[:, None] * u0[None, :], atol=1e-12 * amplitude)


def test_mean_is_conserved_and_outputs_are_strided_point_values():
    grid = SolverGrid(256, offset=0.5 / 32)
    u0 = 0.3 + np.sin(2 * np.pi * grid.x) + 0.5 * np.cos(4 * np.pi * grid.x)
    fine = solve_burgers(u0[None], 0.05, 0.02, 11, grid=grid)
    coarse = solve_burgers(u0[None], 0.05, 0.02, 11, grid=grid, out_stride=8)
    assert coarse.shape == (1, 11, 32)
    np.testing.assert_array_equal(coarse, fine[:, :, ::8])
    np.testing.assert_allclose(fine[0].mean(axis=1), 0.3, atol=1e-13)  # the k=0 mode never changes
    assert np.abs(fine).max() <= np.abs(u0).max() + 1e-12  # maximum principle


def test_matches_cole_hopf_to_1e10_at_nu_0_01_through_shock_formation():
    # Two modes and a mean offset, which exercises the Galilean shift of the exact solution.
    initial = SineSeries(amplitudes=(0.8, 0.3), wavenumbers=(1, 2), phases=(0.3, 1.1), offset=0.2)
    grid = SolverGrid(1024, offset=0.5 / 128)
    frames = solve_burgers(initial(grid.x)[None], 0.01, 0.05, 7, grid=grid, out_stride=8)
    x = grid.x[::8]
    errors = [_relative_l2(frames[0, k], cole_hopf_solution(initial, 0.01, x, 0.05 * k)) for k in range(1, 7)]
    assert max(errors) < 1e-10, errors


def test_matches_cole_hopf_at_nu_0_001_as_resolution_allows():
    initial = SineSeries(amplitudes=(1.0,), wavenumbers=(1,), phases=(0.0,))
    x_coarse = (np.arange(128) + 0.5) / 128
    errors = {}
    for resolution in (1024, 2048):
        grid = SolverGrid(resolution, offset=0.5 / 128)
        frames = solve_burgers(initial(grid.x)[None], 0.001, 0.1, 4, grid=grid, out_stride=resolution // 128)
        errors[resolution] = max(
            _relative_l2(frames[0, k], cole_hopf_solution(initial, 0.001, x_coarse, 0.1 * k)) for k in (1, 2, 3)
        )
    # Before the shock (t=0.1) it is exact; at its steepest (t~0.3) 2048 points give < 1e-3.
    assert errors[2048] < 1.5e-3, errors
    assert errors[2048] < errors[1024] / 3, errors


def test_step_control_follows_amplitude_and_divides_the_frame():
    grid = SolverGrid(2048)
    control = StepControl(max_displacement=1e-4, cfl=1.0)
    assert control.substeps(0.01, 1.0, grid) == 100
    assert control.substeps(0.01, 0.5, grid) == 50
    assert control.substeps(0.01, 1e-9, grid) == 10  # capped by max_step


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch")
    grid = SolverGrid(128)
    u0 = np.sin(2 * np.pi * grid.x)[None] * np.array([[1.0], [0.5]])
    reference = solve_burgers(u0, 0.02, 0.05, 5, grid=grid)
    np.testing.assert_allclose(solve_burgers(u0, 0.02, 0.05, 5, grid=grid, device="cpu"), reference, atol=1e-13)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_stride": 3}, "out_stride"),
        ({"nu": 0.0}, "nu > 0"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    grid = SolverGrid(64)
    arguments = {"u0": np.zeros((1, 64)), "nu": 0.01, "frame_dt": 0.01, "n_frames": 2, "grid": grid, **kwargs}
    with pytest.raises(ValueError, match=message):
        solve_burgers(**arguments)


def test_grid_rejects_odd_resolution():
    with pytest.raises(ValueError, match="even"):
        SolverGrid(63)
