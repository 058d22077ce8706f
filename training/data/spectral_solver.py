"""Pseudo-spectral ETDRK4 solver for periodic 1D viscous Burgers, vectorised over a batch.

Solves u_t + (u^2/2)_x = eps * u_xx on x in [0, 1) with eps = nu / pi (PDEBench's convention).
In Fourier space u_hat' = L u_hat + N(u_hat) with the stiff diffusion L = -eps * kappa^2 handled
exactly by exponential time differencing (Cox & Matthews' ETDRK4). The phi-function coefficients are
evaluated by the contour-integral mean of Kassam & Trefethen (2005), which avoids the cancellation
of the closed formulas at small |h L|. The quadratic term is dealiased with the 2/3 rule.

The same loop runs on numpy (default) or on torch tensors (`device="cuda"` makes data generation on a
GPU instance fast); both in float64, the FFTs are the cost either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONTOUR_POINTS = 64


@dataclass(frozen=True)
class EtdCoefficients:
    """Per-mode ETDRK4 multipliers for one step size h (arrays over the rfft modes)."""

    e: np.ndarray  # exp(hL)
    e_half: np.ndarray  # exp(hL/2)
    q: np.ndarray  # (exp(hL/2) - 1) / L, the half-step multiplier of N
    f1: np.ndarray
    f2: np.ndarray
    f3: np.ndarray


def etdrk4_coefficients(linear: np.ndarray, h: float, contour_points: int = CONTOUR_POINTS) -> EtdCoefficients:
    """Kassam–Trefethen coefficients for a real diagonal linear operator `linear` and step `h`."""
    hl = h * np.asarray(linear, dtype=np.float64)
    # Points on a unit circle around each h*L; the mean over the circle equals the value at the centre
    # (Cauchy's integral formula) without the 0/0 cancellation. Real L -> upper half circle suffices.
    roots = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = hl[:, None] + roots[None, :]
    exp_lr = np.exp(lr)
    q = h * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = h * np.real(np.mean((-4 - lr + exp_lr * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = h * np.real(np.mean((2 + lr + exp_lr * (lr - 2)) / lr**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * lr - lr**2 + exp_lr * (4 - lr)) / lr**3, axis=1))
    return EtdCoefficients(e=np.exp(hl), e_half=np.exp(hl / 2), q=q, f1=f1, f2=f2, f3=f3)


@dataclass(frozen=True)
class SolverGrid:
    """Fine periodic grid x_j = offset + j / resolution of the unit interval."""

    resolution: int
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution % 2:
            raise ValueError(f"solver resolution must be an even integer >= 8, got {self.resolution}")

    @property
    def x(self) -> np.ndarray:
        return self.offset + np.arange(self.resolution) / self.resolution

    @property
    def wavenumbers(self) -> np.ndarray:
        """Angular wavenumbers kappa = 2*pi*k of the rfft modes."""
        return 2 * np.pi * np.arange(self.resolution // 2 + 1)

    @property
    def dealias_mask(self) -> np.ndarray:
        """2/3 rule: keep k < resolution/3 so the quadratic term does not alias."""
        return np.arange(self.resolution // 2 + 1) < self.resolution / 3

    @property
    def kappa_max(self) -> float:
        return 2 * np.pi * (self.resolution / 3)


@dataclass(frozen=True)
class StepControl:
    """How the time step follows the solution's amplitude U = max|u| (which never grows).

    `cfl` bounds h * kappa_max * U for stability on this grid; `max_displacement` bounds h * U, the
    distance a wave moves per step as a fraction of the domain, which sets ETDRK4's 4th-order error:
    1.2e-4 gives ~1e-11 relative error at nu = 0.01. Steps divide each frame interval exactly and are
    re-chosen at every frame as U decays.
    """

    cfl: float = 1.0
    max_displacement: float = 1.2e-4
    max_step: float = 1e-3

    def substeps(self, frame_dt: float, max_abs_u: float, grid: SolverGrid) -> int:
        amplitude = max(max_abs_u, 1e-12)
        h = min(self.cfl / (grid.kappa_max * amplitude), self.max_displacement / amplitude, self.max_step)
        return max(1, math.ceil(frame_dt / h - 1e-9))


def solve_burgers(
    u0: np.ndarray,
    nu: float,
    frame_dt: float,
    n_frames: int,
    *,
    grid: SolverGrid,
    out_stride: int = 1,
    control: StepControl | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Evolve a batch u0 [B, resolution]; return frames u(k * frame_dt), k < n_frames, as [B, T, X/out_stride].

    Output frames are point values of the fine grid taken every `out_stride` points (float64 numpy).
    `device=None` runs on numpy; any torch device name ("cpu", "cuda") runs the same steps in torch.
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    if u0.shape[1] != grid.resolution:
        raise ValueError(f"u0 has {u0.shape[1]} points, grid has {grid.resolution}")
    if grid.resolution % out_stride:
        raise ValueError(f"out_stride {out_stride} must divide the solver resolution {grid.resolution}")
    if nu <= 0 or frame_dt <= 0 or n_frames < 1:
        raise ValueError(f"need nu > 0, frame_dt > 0, n_frames >= 1; got {nu}, {frame_dt}, {n_frames}")
    control = control or StepControl()
    ops = _NumpyOps() if device is None else _TorchOps(device)
    eps = nu / np.pi
    kappa = grid.wavenumbers
    linear = -eps * kappa**2
    # N(v) = -(i kappa / 2) * FFT(u^2), dealiased: one complex multiplier per mode.
    nonlinear_factor = ops.asarray(np.where(grid.dealias_mask, -0.5j * kappa, 0.0))
    n = grid.resolution
    coefficient_cache: dict[int, tuple] = {}

    def coefficients(substeps: int) -> tuple:
        if substeps not in coefficient_cache:
            c = etdrk4_coefficients(linear, frame_dt / substeps)
            # 2*f2 is folded in once here instead of once per step.
            coefficient_cache[substeps] = tuple(ops.asarray(a) for a in (c.e, c.e_half, c.q, c.f1, 2 * c.f2, c.f3))
        return coefficient_cache[substeps]

    def nonlinear(v_hat):
        u = ops.irfft(v_hat, n)
        return nonlinear_factor * ops.rfft(u * u)

    frames = np.empty((u0.shape[0], n_frames, n // out_stride), dtype=np.float64)
    frames[:, 0] = u0[:, ::out_stride]
    u = ops.asarray(u0)
    v = ops.rfft(u)
    for frame in range(1, n_frames):
        substeps = control.substeps(frame_dt, ops.max_abs(u), grid)
        e, e_half, q, f1, f2_twice, f3 = coefficients(substeps)
        for _ in range(substeps):
            nv = nonlinear(v)
            ev = e_half * v
            a = ev + q * nv
            na = nonlinear(a)
            b = ev + q * na
            nb = nonlinear(b)
            c = e_half * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + f1 * nv + f2_twice * (na + nb) + f3 * nc
        u = ops.irfft(v, n)
        frames[:, frame] = ops.to_numpy(u[:, ::out_stride])
    return frames


class _NumpyOps:
    @staticmethod
    def asarray(a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def rfft(u: np.ndarray) -> np.ndarray:
        return np.fft.rfft(u, axis=-1)

    @staticmethod
    def irfft(v: np.ndarray, n: int) -> np.ndarray:
        return np.fft.irfft(v, n=n, axis=-1)

    @staticmethod
    def max_abs(u: np.ndarray) -> float:
        return float(np.abs(u).max())

    @staticmethod
    def to_numpy(u: np.ndarray) -> np.ndarray:
        return u


class _TorchOps:
    def __init__(self, device: str) -> None:
        import torch  # only needed on this path

        self.torch = torch
        self.device = torch.device(device)

    def asarray(self, a: np.ndarray):
        return self.torch.as_tensor(np.asarray(a), device=self.device)

    def rfft(self, u):
        return self.torch.fft.rfft(u, dim=-1)

    def irfft(self, v, n: int):
        return self.torch.fft.irfft(v, n=n, dim=-1)

    def max_abs(self, u) -> float:
        return float(u.abs().max())  # one device sync per frame, not per step

    @staticmethod
    def to_numpy(u) -> np.ndarray:
        return u.cpu().numpy()
