"""Typed record for a block of 1D Burgers trajectories held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BurgersData:
    """Trajectories u[n, t, x] of 1D Burgers on a periodic grid, after any subsampling.

    `u` is float32 [N, T, X]; `x` [X] and `t` [T] are float64 coordinates of the kept points;
    `nu` is the PDEBench viscosity parameter (diffusion coefficient ν/π) or None when the source
    does not say; `source_path` is the file read, or the directory when shards were concatenated.
    """

    u: np.ndarray
    x: np.ndarray
    t: np.ndarray
    nu: float | None
    source_path: Path

    def __post_init__(self) -> None:
        if self.u.ndim != 3:
            raise ValueError(f"{self.source_path}: u must be [N, T, X], got shape {self.u.shape}")
        _, n_frames, resolution = self.u.shape
        if self.x.shape != (resolution,) or self.t.shape != (n_frames,):
            raise ValueError(
                f"{self.source_path}: coordinates x{self.x.shape} t{self.t.shape} do not match "
                f"u{self.u.shape}"
            )

    @property
    def n_samples(self) -> int:
        return int(self.u.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.u.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.u.shape[2])

    @property
    def dt(self) -> float:
        """Time between stored frames (after time subsampling).

        Rounded to 7 significant digits: PDEBench stores float32 times, whose steps read 0.0099999998.
        """
        return float(f"{self.t[1] - self.t[0]:.7g}") if self.n_frames > 1 else 0.0

    @property
    def dx(self) -> float:
        """Grid spacing (after space subsampling)."""
        return float(self.x[1] - self.x[0]) if self.resolution > 1 else 1.0
