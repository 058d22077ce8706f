"""The config's data files: checked up front (before any training), fingerprinted, loaded per split.

Reading goes through `training.data` (the PDEBench-layout reader); this module adds what the pipeline
needs on top: every listed file exists, is readable, agrees in shape and viscosity with the others and
with the config, and has a sha256 (from manifest.json when the data dir has one, verified) that keys
the latent cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.config import Config
from training.data import DataFileError, load_burgers, verify_manifest
from training.data.equations import read_equation
from training.data.layout import MANIFEST_NAME
from training.data.manifest import sha256_of

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataPlan:
    """Validated files per split, with their checksums and the shape after subsampling."""

    files: dict[str, list[Path]]
    sha256: dict[str, str]  # file name -> sha256
    frames: int  # frames per trajectory after t_stride
    resolution: int  # grid points after x_stride
    dt: float
    nu: float | None

    @property
    def fingerprint(self) -> str:
        """One hash over every file's checksum, in split order: the data part of the cache key."""
        listing = {split: [(p.name, self.sha256[p.name]) for p in paths] for split, paths in self.files.items()}
        return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SplitTensor:
    u: torch.Tensor  # [N, T, X] float32, physical units
    dt: float
    x: torch.Tensor  # [X] grid coordinates


def plan_data(cfg: Config, data_dir: Path) -> DataPlan:
    """Check every file the config names; raise DataFileError naming the first bad file or key."""
    data = cfg.data
    files = {split: [data_dir / name for name in getattr(data, split)] for split in SPLITS}
    missing = [str(path) for paths in files.values() for path in paths if not path.is_file()]
    if missing:
        raise DataFileError(
            f"data file(s) not found: {', '.join(missing)} (data dir {data_dir}; fetch them from "
            f"{data.remote_prefix!r} or generate them with `python -m training data`)"
        )
    sha = _checksums(data_dir, [path for paths in files.values() for path in paths])
    shapes: dict[Path, tuple[int, int, float, float | None]] = {}
    for path in (p for paths in files.values() for p in paths):
        equation = read_equation(path).name
        if equation != data.equation:
            raise DataFileError(f"{path}: a {equation} dataset, but the config's data.equation is {data.equation!r}; "
                                f"name {equation} files, or set data.equation: {equation}")
        head = load_burgers(path, t_stride=data.t_stride, x_stride=data.x_stride, samples=slice(0, 1),
                            max_frames=data.max_frames)
        shapes[path] = (head.n_frames, head.resolution, head.dt, head.nu)
    first_path, (frames, resolution, dt, nu) = next(iter(shapes.items()))
    for path, shape in shapes.items():
        if shape[:2] != (frames, resolution):
            raise DataFileError(
                f"{path}: frames x resolution {shape[:2]} after strides differs from {first_path}: "
                f"{(frames, resolution)}"
            )
        if shape[3] is not None and data.nu is not None and not np.isclose(shape[3], data.nu):
            raise DataFileError(f"{path}: viscosity nu={shape[3]} but data.nu is {data.nu}")
    _check_fits_models(cfg, first_path, frames, resolution)
    return DataPlan(files=files, sha256=sha, frames=frames, resolution=resolution, dt=dt, nu=nu)


def _check_fits_models(cfg: Config, path: Path, frames: int, resolution: int) -> None:
    factor = 2**cfg.autoencoder.levels
    if resolution % factor:
        raise DataFileError(
            f"{path}: resolution {resolution} after x_stride is not divisible by 2**autoencoder.levels = {factor}"
        )
    if frames < cfg.evaluate.rollout_steps + 1:
        raise DataFileError(
            f"{path}: {frames} frames after t_stride, but evaluate.rollout_steps={cfg.evaluate.rollout_steps} "
            f"needs {cfg.evaluate.rollout_steps + 1}"
        )
    needed = max(cfg.operator.unroll_steps, cfg.fno.unroll_steps) + 1
    if frames < needed:
        raise DataFileError(f"{path}: {frames} frames after t_stride; unrolled training needs {needed}")


def _checksums(data_dir: Path, paths: list[Path]) -> dict[str, str]:
    """sha256 per file: verified against manifest.json when the data dir has one, computed otherwise."""
    listed: dict[str, str] = {}
    if (data_dir / MANIFEST_NAME).is_file():
        listed = {name: entry.sha256 for name, entry in verify_manifest(data_dir).items()}
    return {path.name: listed.get(path.name) or sha256_of(path) for path in paths}


def load_split(cfg: Config, plan: DataPlan, split: str) -> SplitTensor:
    """All files of `split`, subsampled as configured, concatenated along trajectories."""
    data = cfg.data
    cap = data.max_train_samples if split == "train" else data.max_eval_samples
    parts, remaining, x = [], cap, None
    for path in plan.files[split]:
        if remaining is not None and remaining <= 0:
            break
        rows = None if remaining is None else slice(0, remaining)
        part = load_burgers(path, t_stride=data.t_stride, x_stride=data.x_stride, samples=rows,
                            max_frames=data.max_frames)
        parts.append(part.u)
        x = part.x if x is None else x
        if remaining is not None:
            remaining -= part.n_samples
    u = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return SplitTensor(u=torch.from_numpy(u), dt=plan.dt, x=torch.from_numpy(x))
