"""Kuramoto–Sivashinsky datasets: PDE-Refiner's setup, solved with our ETDRK4 solver, in our Burgers layout.

The setup follows the KS data of Brandstetter et al. (LPSDA, 2022), which PDE-Refiner (Lippe et al.
2023) trains on through pdearena: domain length L = 64 with 256 points (dx = 0.25), frames 0.2 apart,
the first 360 frames (t < 72) discarded as burn-in so every trajectory starts on the chaotic
attractor, and initial conditions u0 = sum of 10 waves A sin(2 pi l x / L + phi), A ~ U[-0.5, 0.5),
phi ~ U[0, 2 pi), l uniform in {1, 2}. pdearena's loader predicts every 4th frame (a model step of
0.8), which our configs express as data.t_stride: 4. Differences: L is fixed (LPSDA draws it within
+-10 % and T with it, so its dt varies), and the solver is ETDRK4 with a fixed step rather than
scipy's Radau at tolerance 1e-9. The burn-in is checked: the spatial rms settles by t ~ 40.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from training.config import EQUATION_KS
from training.data.generate import SPLIT_STREAMS
from training.data.ks_solver import solve_ks
from training.data.spectral_solver import SolverGrid

KS_GENERATOR_NAME = "universal_simulator.ks1d.etdrk4/1"
KS_SOLVER_POINTS = 256  # at L = 64 the energy at the 2/3-rule cut-off (kappa ~ 8.4) is ~1e-22 of the peak


@dataclass(frozen=True)
class KsInitialFamily:
    """LPSDA's KS initial conditions: `waves` sines with amplitudes in [-max_amplitude, max_amplitude)."""

    waves: int = 10
    max_amplitude: float = 0.5
    wavenumbers: tuple[int, int] = (1, 2)  # l drawn uniformly from this inclusive range (cycles per domain)

    def sample(self, seed: int, stream: int, indices: list[int], x: np.ndarray, length: float) -> np.ndarray:
        """u0 [len(indices), X] at points `x`; trajectory i draws from its own generator (seed, stream, i)."""
        rows = []
        for index in indices:
            rng = np.random.default_rng([seed, stream, index])
            amplitude = rng.uniform(-self.max_amplitude, self.max_amplitude, size=self.waves)
            phase = rng.uniform(0.0, 2 * np.pi, size=self.waves)
            cycles = rng.integers(self.wavenumbers[0], self.wavenumbers[1] + 1, size=self.waves)
            angle = 2 * np.pi * cycles[:, None] * np.asarray(x)[None, :] / length + phase[:, None]
            rows.append(np.sum(amplitude[:, None] * np.sin(angle), axis=0))
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(x))


@dataclass(frozen=True)
class KsSpec:
    """Everything that determines a KS dataset (stored in each shard and the manifest)."""

    length: float = 64.0
    seed: int = 0
    resolution: int = 256
    solver_resolution: int | None = None  # None: 256, or the next multiple of `resolution` above it
    frames: int = 201
    frame_dt: float = 0.2
    burn_in: float = 72.0  # time integrated before frame 0: a whole number of frame_dt
    max_step: float = 0.05  # ETDRK4 step bound: 3e-6 relative to a 4x finer step at t = 30 (chaos amplifies)
    family: KsInitialFamily = field(default_factory=KsInitialFamily)

    equation = EQUATION_KS  # class constants, not fields (see GenerationSpec)
    shard_prefix = "ks1d"
    nu = None  # KS has no viscosity attribute

    def __post_init__(self) -> None:
        if not self.length > 0:
            raise ValueError(f"KS domain length must be > 0, got {self.length}")
        if self.resolution < 2 or self.resolution % 2:
            raise ValueError(f"resolution must be an even integer >= 2, got {self.resolution}")
        if self.solver_resolution is None:
            solver = self.resolution * math.ceil(KS_SOLVER_POINTS / self.resolution)
            object.__setattr__(self, "solver_resolution", solver)
        if self.solver_resolution % self.resolution:
            raise ValueError(f"resolution {self.resolution} must divide solver_resolution {self.solver_resolution}")
        if self.frames < 2 or not self.frame_dt > 0 or not self.max_step > 0:
            raise ValueError(
                f"need frames >= 2, frame_dt > 0, max_step > 0; got {self.frames}, {self.frame_dt}, {self.max_step}"
            )
        skip = self.burn_in / self.frame_dt
        if self.burn_in < 0 or abs(skip - round(skip)) > 1e-9 * max(1.0, skip):
            raise ValueError(f"burn_in {self.burn_in} must be >= 0 and a whole number of frame_dt {self.frame_dt}")

    @property
    def grid(self) -> SolverGrid:
        # As for Burgers: every stride-th fine point is a cell centre (j + 1/2) L / X of the stored grid.
        return SolverGrid(self.solver_resolution, offset=0.5 / self.resolution)

    @property
    def x(self) -> np.ndarray:
        return (np.arange(self.resolution) + 0.5) * self.length / self.resolution

    @property
    def skip_frames(self) -> int:
        return round(self.burn_in / self.frame_dt)

    @property
    def substeps(self) -> int:
        return max(1, math.ceil(self.frame_dt / self.max_step - 1e-9))

    def params(self) -> dict:
        return {"generator": KS_GENERATOR_NAME, "equation": self.equation, **asdict(self)}

    def equation_params(self) -> dict:
        return {"domain_length": self.length, "form": "u_t = -u u_x - u_xx - u_xxxx"}

    def batch_order(self, split: str, indices: list[int]) -> np.ndarray:
        return np.arange(len(indices))  # one fixed step for all: any order

    def solve(self, split: str, indices: list[int], device: str | None) -> np.ndarray:
        """Trajectories `indices` of `split` as float32 [len(indices), frames, resolution]."""
        u0 = self.family.sample(self.seed, SPLIT_STREAMS[split], indices, self.length * self.grid.x, self.length)
        frames = solve_ks(
            u0, self.frame_dt, self.frames, grid=self.grid, length=self.length, substeps=self.substeps,
            skip_frames=self.skip_frames, out_stride=self.solver_resolution // self.resolution, device=device,
        )
        return frames.astype(np.float32)
