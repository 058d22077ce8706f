"""Write trajectories in PDEBench's HDF5 layout, atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from training.config import EQUATION_BURGERS
from training.data.layout import (
    ATTR_EQUATION,
    ATTR_EQUATION_PARAMS,
    ATTR_GENERATOR,
    ATTR_NU,
    ATTR_PARAMS,
    ATTR_SEED,
    T_KEY,
    TENSOR_KEY,
    X_KEY,
)


def write_burgers_file(
    path: str | Path,
    u: np.ndarray,
    x: np.ndarray,
    frame_dt: float,
    *,
    nu: float,
    seed: int | None = None,
    generator: str = "",
    params: Mapping[str, object] | None = None,
) -> Path:
    """Write Burgers trajectories: `write_trajectories` with equation "burgers" and its viscosity `nu`."""
    return write_trajectories(
        path, u, x, frame_dt, equation=EQUATION_BURGERS, equation_params={"nu": float(nu)}, nu=nu, seed=seed,
        generator=generator, params=params,
    )


def write_trajectories(
    path: str | Path,
    u: np.ndarray,
    x: np.ndarray,
    frame_dt: float,
    *,
    equation: str,
    equation_params: Mapping[str, object],
    nu: float | None = None,
    seed: int | None = None,
    generator: str = "",
    params: Mapping[str, object] | None = None,
) -> Path:
    """Write u [N, T, X] with `x-coordinate` [X] and PDEBench's T+1 `t-coordinate` (k * frame_dt).

    The attributes name the equation and its parameters; `nu` (PDEBench's viscosity attribute) only
    for equations that have one. The file appears under its final name only once complete, so a
    crash never leaves a partial shard that a later run would mistake for a good one.
    """
    path = Path(path)
    if u.ndim != 3 or x.shape != (u.shape[2],):
        raise ValueError(f"{path}: u must be [N, T, X] and x [X]; got u{u.shape}, x{x.shape}")
    t = np.arange(u.shape[1] + 1, dtype=np.float64) * frame_dt
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp_name, "w") as handle:
            handle.create_dataset(TENSOR_KEY, data=np.asarray(u, dtype=np.float32))
            handle.create_dataset(X_KEY, data=np.asarray(x, dtype=np.float64))
            handle.create_dataset(T_KEY, data=t)
            handle.attrs[ATTR_EQUATION] = equation
            handle.attrs[ATTR_EQUATION_PARAMS] = json.dumps(dict(equation_params), sort_keys=True)
            if nu is not None:
                handle.attrs[ATTR_NU] = float(nu)
            handle.attrs[ATTR_GENERATOR] = generator
            if seed is not None:
                handle.attrs[ATTR_SEED] = int(seed)
            handle.attrs[ATTR_PARAMS] = json.dumps(dict(params or {}), sort_keys=True)
        _fsync_file(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _fsync_file(name: str) -> None:
    with open(name, "rb") as handle:
        os.fsync(handle.fileno())
