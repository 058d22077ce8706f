"""PDEBench's family of random initial conditions for 1D Burgers, sampled reproducibly per trajectory.

The family (PDEBench, "init_multi" for Burgers) is a sum over K wavenumber slots i = 1..K of
a_i sin(2 pi k_i x + phi_i), a_i ~ U[0, 1), phi_i ~ U[0, 2 pi). Two slots are drawn (with replacement)
and a slot's wavenumber is i times the number of draws that hit it, so an undrawn slot has k_i = 0 and
adds the constant a_i sin(phi_i): the random mean is part of the family. Then, with probability 0.1,
u -> |u|; the sign flips with probability 0.5; with probability 0.1 u is multiplied by a smooth window
0.5 (tanh((x - xL)/w) - tanh((x - xR)/w)), xL ~ U[0.1, 0.45], xR ~ U[0.55, 0.9], w = 0.01.
Difference from PDEBench: we use integer wavenumbers on [0, 1) so every u0 is exactly periodic
(PDEBench divides by x[-1] - x[0] = 1 - dx, a slight mismatch at the boundary).

Each trajectory draws from its own generator seeded by (seed, split stream, index), so sample i is the
same whatever the number of samples, the sharding or the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InitialConditionFamily:
    """Parameters of the PDEBench-like distribution (defaults are PDEBench's Burgers settings)."""

    wavenumber_slots: int = 4
    draws: int = 2
    absolute_probability: float = 0.1
    flip_probability: float = 0.5
    window_probability: float = 0.1
    window_left: tuple[float, float] = (0.1, 0.45)
    window_right: tuple[float, float] = (0.55, 0.9)
    window_width: float = 0.01


@dataclass(frozen=True)
class InitialConditions:
    """Sampled parameters of B initial conditions; `evaluate(x)` gives u0 [B, X]."""

    wavenumbers: np.ndarray  # [B, K] int, 0 = constant slot
    amplitudes: np.ndarray  # [B, K]
    phases: np.ndarray  # [B, K]
    absolute: np.ndarray  # [B] bool
    sign: np.ndarray  # [B] +-1
    windowed: np.ndarray  # [B] bool
    window_left: np.ndarray  # [B]
    window_right: np.ndarray  # [B]
    window_width: float

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        angle = 2 * np.pi * self.wavenumbers[:, :, None] * x[None, None, :] + self.phases[:, :, None]
        u = np.sum(self.amplitudes[:, :, None] * np.sin(angle), axis=1)
        u = np.where(self.absolute[:, None], np.abs(u), u) * self.sign[:, None]
        inside = np.mod(x, 1.0)[None, :]  # the window lives on one period [0, 1)
        window = 0.5 * (
            np.tanh((inside - self.window_left[:, None]) / self.window_width)
            - np.tanh((inside - self.window_right[:, None]) / self.window_width)
        )
        return np.where(self.windowed[:, None], u * window, u)


def sample_initial_conditions(
    family: InitialConditionFamily, seed: int, stream: int, indices: range | list[int]
) -> InitialConditions:
    """Parameters for trajectories `indices` of `stream` (one stream per split) under `seed`."""
    slots = family.wavenumber_slots
    rows = []
    for index in indices:
        rng = np.random.default_rng([seed, stream, index])
        drawn = rng.integers(0, slots, size=family.draws)
        multiplicity = np.bincount(drawn, minlength=slots)
        rows.append(
            (
                np.arange(1, slots + 1) * multiplicity,
                rng.uniform(0.0, 1.0, size=slots),
                rng.uniform(0.0, 2 * np.pi, size=slots),
                rng.uniform() < family.absolute_probability,
                -1.0 if rng.uniform() < family.flip_probability else 1.0,
                rng.uniform() < family.window_probability,
                rng.uniform(*family.window_left),
                rng.uniform(*family.window_right),
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 8
    return InitialConditions(
        wavenumbers=np.array(columns[0], dtype=np.int64).reshape(len(rows), slots),
        amplitudes=np.array(columns[1], dtype=np.float64).reshape(len(rows), slots),
        phases=np.array(columns[2], dtype=np.float64).reshape(len(rows), slots),
        absolute=np.array(columns[3], dtype=bool),
        sign=np.array(columns[4], dtype=np.float64),
        windowed=np.array(columns[5], dtype=bool),
        window_left=np.array(columns[6], dtype=np.float64),
        window_right=np.array(columns[7], dtype=np.float64),
        window_width=family.window_width,
    )
