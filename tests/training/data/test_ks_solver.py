"""The Kuramoto–Sivashinsky ETDRK4 solver against the linearised exact solution, its own dt-convergence,
Kassam & Trefethen's (2005) textbook run, and its invariant (the spatial mean)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.ks_solver import ks_linear_operator, solve_ks
from training.data.spectral_solver import SolverGrid

KT_LENGTH = 32 * np.pi  # Kassam & Trefethen's kursiv.m: [0, 32 pi], 128 points, h = 1/4


def _kt_initial(x: np.ndarray) -> np.ndarray:
    return np.cos(x / 16) * (1 + np.sin(x / 16))


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_tiny_amplitude_follows_the_linearised_equation_exactly():
    # For |u| << 1 the nonlinear term is negligible and each mode grows or decays as exp((k^2 - k^4) t):
    # k = 2 pi m / 64 with m = 4 (k ~ 0.39) grows, m = 12 (k ~ 1.18) decays. ETD integrates L exactly.
    length, grid = 64.0, SolverGrid(128)
    x = length * grid.x
    epsilon, times = 1e-10, np.arange(6) * 4.0
    modes = {4: 0.3, 12: 1.1}
    u0 = epsilon * sum(np.sin(2 * np.pi * m * x / length + phase) for m, phase in modes.items())
    frames = solve_ks(u0[None], 4.0, len(times), grid=grid, length=length, substeps=8)[0]
    rates = dict(zip(range(grid.resolution // 2 + 1), ks_linear_operator(grid, length), strict=True))
    assert rates[4] > 0 > rates[12]
    for frame, t in zip(frames, times, strict=True):
        exact = epsilon * sum(
            np.exp(rates[m] * t) * np.sin(2 * np.pi * m * x / length + phase) for m, phase in modes.items()
        )
        assert _relative_l2(frame, exact) < 1e-7, t  # measured <= 4e-9: nonlinear O(epsilon) only
    assert np.abs(frames[-1]).max() > 10 * epsilon  # the unstable mode really grew


def test_time_step_convergence_is_fourth_order():
    # Kassam–Trefethen's initial condition over t <= 4 (nonlinear, before chaos amplifies differences):
    # halving h shrinks the error against a fine reference by ~2^4 = 16.
    grid = SolverGrid(128)
    u0 = _kt_initial(KT_LENGTH * grid.x)[None]

    def run(substeps: int) -> np.ndarray:
        return solve_ks(u0, 1.0, 5, grid=grid, length=KT_LENGTH, substeps=substeps)[0]

    reference = run(64)
    errors = [max(_relative_l2(run(s)[k], reference[k]) for k in range(1, 5)) for s in (2, 4, 8)]
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(10 < r < 22 for r in ratios), (errors, ratios)
    assert errors[-1] < 1e-7  # measured 1.9e-6, 1.3e-7, 8.7e-9 for h = 1/2, 1/4, 1/8


def test_kassam_trefethen_run_reaches_bounded_chaos_and_their_step_is_accurate():
    # Their run: h = 1/4 to t = 150. The solution leaves the smooth initial state, develops the familiar
    # cellular chaos with max|u| ~ 3 and stays bounded; their h agrees with h = 1/64 while chaos is young.
    grid = SolverGrid(128)
    u0 = _kt_initial(KT_LENGTH * grid.x)[None]
    frames = solve_ks(u0, 1.0, 151, grid=grid, length=KT_LENGTH, substeps=4)[0]
    assert 2.5 < np.abs(frames).max() < 4.0
    late = frames[100:]
    assert 0.9 < late.std() < 1.5  # attractor rms (measured 1.17); the smooth initial state's is 0.79
    spectrum = np.abs(np.fft.rfft(late, axis=-1)) ** 2
    kappa = 2 * np.pi * np.arange(spectrum.shape[-1]) / KT_LENGTH
    peak = kappa[np.argmax(spectrum.mean(axis=0))]
    assert 0.4 < peak < 1.0  # energy sits in the linearly unstable band 0 < k < 1 (fastest at 1/sqrt 2)
    fine = solve_ks(u0, 1.0, 31, grid=grid, length=KT_LENGTH, substeps=64)[0]
    assert max(_relative_l2(frames[k], fine[k]) for k in range(1, 31)) < 1e-4  # measured 2.9e-5


def test_spatial_mean_is_conserved_to_round_off():
    length, grid = 64.0, SolverGrid(128)
    x = length * grid.x
    rng = np.random.default_rng(3)
    u0 = 0.4 + 0.5 * np.sin(2 * np.pi * x / length) + 0.3 * rng.standard_normal((3, x.size)) * 0.1
    frames = solve_ks(u0, 1.0, 81, grid=grid, length=length, substeps=4)
    means = frames.mean(axis=-1)
    assert np.abs(means - u0.mean(axis=-1, keepdims=True)).max() < 1e-13
    assert frames[:, -1].std(axis=-1).min() > 0.8  # chaotic by then, not a trivially static field


def test_skip_frames_and_strides_return_the_later_fine_grid_points():
    length, grid = 64.0, SolverGrid(128, offset=0.5 / 32)
    u0 = np.sin(2 * np.pi * 2 * length * grid.x / length)[None]
    full = solve_ks(u0, 0.5, 8, grid=grid, length=length, substeps=2)
    later = solve_ks(u0, 0.5, 3, grid=grid, length=length, substeps=2, skip_frames=5, out_stride=4)
    np.testing.assert_allclose(later, full[:, 5:, ::4], rtol=0, atol=1e-13)


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch")
    grid = SolverGrid(64)
    u0 = _kt_initial(KT_LENGTH * grid.x)[None]
    a = solve_ks(u0, 1.0, 6, grid=grid, length=KT_LENGTH, substeps=4)
    b = solve_ks(u0, 1.0, 6, grid=grid, length=KT_LENGTH, substeps=4, device="cpu")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


def test_too_large_a_step_is_reported_as_a_blow_up():
    grid = SolverGrid(128)
    u0 = _kt_initial(KT_LENGTH * grid.x)[None]
    with pytest.raises(ValueError, match="blew up .* use more substeps per frame than 1"):
        solve_ks(u0, 4.0, 50, grid=grid, length=KT_LENGTH, substeps=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"substeps": 0}, "substeps >= 1"),
    ({"length": -1.0}, "length > 0"),
    ({"out_stride": 3}, "must divide the solver resolution"),
])
def test_rejects_bad_arguments(kwargs, message):
    grid = SolverGrid(16)
    arguments = {"grid": grid, "length": 10.0, "substeps": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        solve_ks(np.zeros((1, 16)), 0.1, 2, **arguments)
