"""The exact Cole–Hopf solution checked on its own: initial limit, PDE residual, known profiles."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.cole_hopf import SineSeries, cole_hopf_solution


def test_small_time_recovers_the_initial_condition():
    initial = SineSeries(amplitudes=(1.0, 0.5), wavenumbers=(1, 3), phases=(0.0, 0.7), offset=-0.1)
    x = np.linspace(0, 1, 50, endpoint=False)
    np.testing.assert_allclose(cole_hopf_solution(initial, 0.01, x, 0.0), initial(x), rtol=0, atol=0)
    # u(x, t) = u0 + t (eps u0'' - u0 u0') + O(t^2) for small t; derivatives of the series by hand.
    k = 2 * np.pi * np.array(initial.wavenumbers)[:, None]
    angle = k * x[None, :] + np.array(initial.phases)[:, None]
    a = np.array(initial.amplitudes)[:, None]
    slope, curvature = (a * k * np.cos(angle)).sum(0), (-a * k**2 * np.sin(angle)).sum(0)
    t, eps = 1e-6, 0.01 / np.pi
    expected = initial(x) + t * (eps * curvature - initial(x) * slope)
    np.testing.assert_allclose(cole_hopf_solution(initial, 0.01, x, t), expected, atol=1e-9)


@pytest.mark.parametrize("nu", [0.1, 0.01])
def test_satisfies_burgers_equation(nu):
    initial = SineSeries(amplitudes=(0.7,), wavenumbers=(1,), phases=(0.4,), offset=0.1)
    eps, t, dt, dx = nu / np.pi, 0.1, 1e-4, 1e-4
    x = np.linspace(0.05, 0.95, 19)

    def u(xs, ts):
        return cole_hopf_solution(initial, nu, xs, ts)

    u_t = (u(x, t + dt) - u(x, t - dt)) / (2 * dt)
    u_x = (u(x + dx, t) - u(x - dx, t)) / (2 * dx)
    u_xx = (u(x + dx, t) - 2 * u(x, t) + u(x - dx, t)) / dx**2
    residual = u_t + u(x, t) * u_x - eps * u_xx
    assert np.abs(residual).max() < 1e-5 * max(1.0, np.abs(u_t).max())


def test_late_sine_solution_is_periodic_odd_and_decaying():
    initial = SineSeries(amplitudes=(1.0,), wavenumbers=(1,), phases=(0.0,))
    x = np.linspace(0, 1, 101)
    u = cole_hopf_solution(initial, 0.001, x, 1.0)
    np.testing.assert_allclose(u, -u[::-1], atol=1e-12)  # odd about x = 1/2, shock standing there
    assert np.abs(u).max() < 0.6  # shocks dissipate energy
    assert np.all(np.isfinite(u))
    # Inviscid limit away from the shock: sawtooth u ~ (x - 1/2)/t? the ramp slope is bounded by 1/t.
    assert np.all(np.diff(u[5:45]) / np.diff(x[5:45]) < 1.0 + 1e-6)


def test_rejects_non_integer_wavenumbers():
    with pytest.raises(ValueError, match="integers"):
        SineSeries(amplitudes=(1.0,), wavenumbers=(1.5,), phases=(0.0,))
