"""Pseudo-spectral ETDRK4 solver for the periodic 1D Kuramoto–Sivashinsky equation, vectorised over a batch.

Solves u_t = -u u_x - u_xx - u_xxxx on x in [0, length), the textbook ETDRK4 example of Kassam &
Trefethen (2005, their `kursiv.m`: length 32 pi, 128 points, h = 1/4). In Fourier space
u_hat' = L u_hat + N(u_hat) with L = kappa^2 - kappa^4 (kappa = 2 pi k / length) handled exactly and
N = -(i kappa / 2) FFT(u^2), dealiased with the 2/3 rule. The same coefficients (Kassam–Trefethen's
contour mean), grid and numpy/torch backends as the Burgers solver (`spectral_solver`).

Unlike Burgers, KS neither decays nor steepens: on its chaotic attractor max|u| stays O(3), so one
fixed step h = frame_dt / substeps serves the whole trajectory. The k = 0 mode has L = 0 and N = 0, so
the spatial mean is conserved exactly by construction.
"""

from __future__ import annotations

import numpy as np

# The Burgers solver's backends and grid are the same machinery; the KS solver reuses them as they are.
from training.data.spectral_solver import SolverGrid, _NumpyOps, _TorchOps, etdrk4_coefficients

BLOW_UP = 1e6  # max|u| beyond this is a numerical blow-up, not KS dynamics (the attractor has max|u| < 5)


def ks_linear_operator(grid: SolverGrid, length: float) -> np.ndarray:
    """L = kappa^2 - kappa^4 per rfft mode of a periodic grid of `length` (anti-diffusion and hyperdiffusion)."""
    kappa = grid.wavenumbers / length
    return kappa**2 - kappa**4


def solve_ks(
    u0: np.ndarray,
    frame_dt: float,
    n_frames: int,
    *,
    grid: SolverGrid,
    length: float,
    substeps: int,
    skip_frames: int = 0,
    out_stride: int = 1,
    device: str | None = None,
) -> np.ndarray:
    """Evolve a batch u0 [B, resolution] on [0, length); return frames [B, n_frames, X/out_stride] (float64).

    `grid` is the unit-interval grid scaled by `length` (x_j = length * grid.x[j]). The first
    `skip_frames` frames (burn-in onto the attractor) are integrated but not returned; frame 0 of
    the output is the state at t = skip_frames * frame_dt. Each frame is `substeps` ETDRK4 steps.
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    if u0.shape[1] != grid.resolution:
        raise ValueError(f"u0 has {u0.shape[1]} points, grid has {grid.resolution}")
    if grid.resolution % out_stride:
        raise ValueError(f"out_stride {out_stride} must divide the solver resolution {grid.resolution}")
    if not (length > 0 and frame_dt > 0) or n_frames < 1 or substeps < 1 or skip_frames < 0:
        raise ValueError(
            "need length > 0, frame_dt > 0, n_frames >= 1, substeps >= 1, skip_frames >= 0; got "
            f"{length}, {frame_dt}, {n_frames}, {substeps}, {skip_frames}"
        )
    ops = _NumpyOps() if device is None else _TorchOps(device)
    n = grid.resolution
    c = etdrk4_coefficients(ks_linear_operator(grid, length), frame_dt / substeps)
    e, e_half, q, f1, f2_twice, f3 = (ops.asarray(a) for a in (c.e, c.e_half, c.q, c.f1, 2 * c.f2, c.f3))
    nonlinear_factor = ops.asarray(np.where(grid.dealias_mask, -0.5j * grid.wavenumbers / length, 0.0))

    def nonlinear(v_hat):
        u = ops.irfft(v_hat, n)
        return nonlinear_factor * ops.rfft(u * u)

    frames = np.empty((u0.shape[0], n_frames, n // out_stride), dtype=np.float64)
    v = ops.rfft(ops.asarray(u0))
    for frame in range(skip_frames + n_frames):
        if frame >= skip_frames:
            u = ops.irfft(v, n)
            amplitude = ops.max_abs(u)
            if not amplitude < BLOW_UP:  # also catches NaN
                raise ValueError(
                    f"KS solution blew up (max|u| = {amplitude:g}) at t = {frame * frame_dt:g}; "
                    f"use more substeps per frame than {substeps} (step {frame_dt / substeps:g})"
                )
            frames[:, frame - skip_frames] = ops.to_numpy(u[:, ::out_stride])
        if frame == skip_frames + n_frames - 1:
            break
        for _ in range(substeps):
            nv = nonlinear(v)
            ev = e_half * v
            a = ev + q * nv
            na = nonlinear(a)
            b = ev + q * na
            nb = nonlinear(b)
            cc = e_half * a + q * (2 * nb - nv)
            nc = nonlinear(cc)
            v = e * v + f1 * nv + f2_twice * (na + nb) + f3 * nc
    return frames
