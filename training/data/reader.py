"""Read our Burgers shards and PDEBench's 1D Burgers files alike, with time/space subsampling."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from training.config import EQUATION_BURGERS
from training.data.errors import DataFileError
from training.data.layout import (
    ATTR_EQUATION,
    ATTR_NU,
    REQUIRED_KEYS,
    T_KEY,
    TENSOR_KEY,
    X_KEY,
    nu_from_file_name,
    shard_glob,
)
from training.data.records import BurgersData


def load_burgers(
    path: str | Path,
    *,
    t_stride: int = 1,
    x_stride: int = 1,
    samples: slice | None = None,
    max_frames: int | None = None,
    min_frames: int = 2,
) -> BurgersData:
    """Load one HDF5 file in PDEBench's layout.

    `samples` selects trajectories (e.g. slice(0, 100)); `max_frames` keeps the first frames before
    `t_stride` is applied; `x_stride` must divide the stored resolution so the grid stays periodic
    and uniform. Raises DataFileError naming the file for every problem with it.
    """
    path = Path(path)
    _check_strides(path, t_stride, x_stride, min_frames)
    if not path.is_file():
        raise DataFileError(f"{path}: data file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataFileError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {exc}") from exc
    with handle:
        missing = [key for key in REQUIRED_KEYS if key not in handle]
        if missing:
            raise DataFileError(
                f"{path}: missing dataset(s) {missing}; found {sorted(handle.keys())}, "
                f"expected PDEBench's {list(REQUIRED_KEYS)}"
            )
        tensor, x_all, t_all = handle[TENSOR_KEY], handle[X_KEY], handle[T_KEY]
        n_samples, n_frames, resolution = _check_shapes(path, tensor.shape, x_all.shape, t_all.shape)
        if resolution % x_stride:
            raise DataFileError(
                f"{path}: resolution {resolution} is not divisible by x_stride {x_stride}; "
                f"allowed strides divide {resolution}"
            )
        frames_used = n_frames if max_frames is None else min(max_frames, n_frames)
        kept_frames = math.ceil(frames_used / t_stride)
        if kept_frames < min_frames:
            raise DataFileError(
                f"{path}: only {kept_frames} frame(s) left from {n_frames} stored with max_frames="
                f"{max_frames}, t_stride={t_stride}; need at least {min_frames}"
            )
        rows = samples if samples is not None else slice(None)
        start, stop, step = rows.indices(n_samples)
        if step != 1 or stop <= start:
            raise DataFileError(f"{path}: sample selection {rows} is empty or not contiguous (has {n_samples})")
        try:
            u = tensor[start:stop, :frames_used:t_stride, ::x_stride]
            x = np.asarray(x_all[::x_stride], dtype=np.float64)
            t = np.asarray(t_all[:frames_used:t_stride], dtype=np.float64)
        except OSError as exc:
            raise DataFileError(f"{path}: failed reading data (truncated file?): {exc}") from exc
        nu = _nu_of(handle, path)
    u = np.ascontiguousarray(u, dtype=np.float32)
    if not np.isfinite(u).all():
        raise DataFileError(f"{path}: tensor contains NaN or Inf values")
    return BurgersData(u=u, x=x, t=t, nu=nu, source_path=path)


def split_files(directory: str | Path, split: str) -> list[Path]:
    """Shards of `split` in `directory`, in index order; an error if there are none."""
    directory = Path(directory)
    files = sorted(directory.glob(shard_glob(split)))
    if not files:
        raise DataFileError(f"{directory}: no {split} shards ({shard_glob(split)}) found")
    return files


def load_split(directory: str | Path, split: str, **kwargs) -> BurgersData:
    """Load and concatenate all shards of `split` from `directory` (same keyword arguments as load_burgers)."""
    directory = Path(directory)
    parts = [load_burgers(path, **kwargs) for path in split_files(directory, split)]
    first = parts[0]
    for part in parts[1:]:
        if part.u.shape[1:] != first.u.shape[1:] or part.nu != first.nu:
            raise DataFileError(
                f"{part.source_path}: shape {part.u.shape[1:]} / nu {part.nu} differs from "
                f"{first.source_path}: {first.u.shape[1:]} / nu {first.nu}"
            )
        if not (np.allclose(part.x, first.x) and np.allclose(part.t, first.t)):
            raise DataFileError(f"{part.source_path}: coordinates differ from {first.source_path}")
    u = first.u if len(parts) == 1 else np.concatenate([part.u for part in parts], axis=0)
    return BurgersData(u=u, x=first.x, t=first.t, nu=first.nu, source_path=directory)


def _check_strides(path: Path, t_stride: int, x_stride: int, min_frames: int) -> None:
    for name, value in (("t_stride", t_stride), ("x_stride", x_stride), ("min_frames", min_frames)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataFileError(f"{path}: {name} must be a positive integer, got {value!r}")


def _check_shapes(path: Path, tensor_shape, x_shape, t_shape) -> tuple[int, int, int]:
    if len(tensor_shape) != 3:
        raise DataFileError(
            f"{path}: '{TENSOR_KEY}' has shape {tensor_shape}; expected [samples, frames, x] "
            "(1D scalar Burgers)"
        )
    n_samples, n_frames, resolution = tensor_shape
    if x_shape != (resolution,):
        raise DataFileError(f"{path}: '{X_KEY}' has shape {x_shape}; expected ({resolution},) to match tensor")
    # PDEBench stores T+1 time stamps for T frames; our writer does the same. Accept T too.
    if t_shape not in ((n_frames,), (n_frames + 1,)):
        raise DataFileError(
            f"{path}: '{T_KEY}' has shape {t_shape}; expected ({n_frames + 1},) as PDEBench or ({n_frames},)"
        )
    if n_samples == 0 or n_frames == 0 or resolution == 0:
        raise DataFileError(f"{path}: '{TENSOR_KEY}' is empty, shape {tensor_shape}")
    return n_samples, n_frames, resolution


def _nu_of(handle: h5py.File, path: Path) -> float | None:
    if ATTR_NU in handle.attrs:
        return float(handle.attrs[ATTR_NU])
    return nu_from_file_name(path.name)


def domain_of_grid(x: np.ndarray) -> tuple[float, float]:
    """(start, end) of the periodic domain whose uniform cells have centres `x` (PDEBench and our writer store
    cell centres): our files span [0, 1), PDEBench's 1D Burgers files (-1, 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"grid needs at least 2 points, got shape {x.shape}")
    dx = float(x[1] - x[0])
    start = float(x[0]) - dx / 2
    return round(start, 9), round(start + dx * x.size, 9)


def equation_of(path: str | Path) -> str:
    """The PDE a file holds (its `equation` attribute); files without one (PDEBench's, our older ones) are
    Burgers."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get(ATTR_EQUATION, EQUATION_BURGERS)
    except OSError as exc:
        raise DataFileError(f"{path}: not a readable HDF5 file: {exc}") from exc
    return value.decode() if isinstance(value, bytes) else str(value)


def periodic_domain(path: str | Path) -> tuple[float, float]:
    """The domain of a file in PDEBench's layout, read from its full-resolution `x-coordinate`."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            x = np.asarray(handle[X_KEY][:], dtype=np.float64)
    except (OSError, KeyError) as exc:
        raise DataFileError(f"{path}: cannot read '{X_KEY}' for its domain: {exc}") from exc
    return domain_of_grid(x)
