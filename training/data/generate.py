"""Generate datasets: sample initial conditions, solve on a fine grid, write coarse shards.

The driver (shards, resume, workers, manifest) is the same for every equation; a spec says what to
solve: `GenerationSpec` for Burgers here, `training.data.ks_dataset.KsSpec` for Kuramoto–Sivashinsky.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from training.config import EQUATION_BURGERS
from training.data.initial_conditions import InitialConditionFamily, sample_initial_conditions
from training.data.layout import ATTR_PARAMS, SPLITS, shard_name
from training.data.manifest import write_manifest
from training.data.spectral_solver import SolverGrid, StepControl, solve_burgers
from training.data.writer import write_trajectories

GENERATOR_NAME = "universal_simulator.burgers1d.etdrk4/1"
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


class DatasetSpec(Protocol):
    """What the shard driver needs of an equation's generation spec (frozen, picklable for workers)."""

    equation: str  # a name in training.config.EQUATIONS, written to every shard
    shard_prefix: str  # shard file names: <prefix>_<split>_NNN.h5
    seed: int
    frames: int
    frame_dt: float
    resolution: int

    @property
    def nu(self) -> float | None: ...
    @property
    def x(self) -> np.ndarray: ...
    def params(self) -> dict: ...
    def equation_params(self) -> dict: ...
    def solve(self, split: str, indices: list[int], device: str | None) -> np.ndarray: ...
    def batch_order(self, split: str, indices: list[int]) -> np.ndarray: ...


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that determines the generated numbers (stored in each shard and the manifest)."""

    nu: float
    seed: int = 0
    resolution: int = 256
    solver_resolution: int | None = None  # None: default_solver_resolution(nu, resolution)
    frames: int = 201
    frame_dt: float = 0.01
    family: InitialConditionFamily = field(default_factory=InitialConditionFamily)
    control: StepControl = field(default_factory=StepControl)

    equation = EQUATION_BURGERS  # class constants, not fields: params() (the resume key) stays as it was
    shard_prefix = "burgers1d"

    def __post_init__(self) -> None:
        if not self.nu > 0:
            raise ValueError(f"nu must be > 0, got {self.nu}")
        if self.solver_resolution is None:
            object.__setattr__(self, "solver_resolution", default_solver_resolution(self.nu, self.resolution))
        if self.resolution < 2 or self.solver_resolution % self.resolution:
            raise ValueError(
                f"resolution {self.resolution} must divide solver_resolution {self.solver_resolution}"
            )
        if self.frames < 2 or not self.frame_dt > 0:
            raise ValueError(f"need frames >= 2 and frame_dt > 0, got {self.frames}, {self.frame_dt}")

    @property
    def grid(self) -> SolverGrid:
        # Offset the fine grid so that every stride-th point is a cell centre (j + 1/2)/X of the
        # stored grid, PDEBench's x-coordinate convention.
        return SolverGrid(self.solver_resolution, offset=0.5 / self.resolution)

    @property
    def x(self) -> np.ndarray:
        return (np.arange(self.resolution) + 0.5) / self.resolution

    def params(self) -> dict:
        return {"generator": GENERATOR_NAME, **asdict(self)}

    def equation_params(self) -> dict:
        return {"nu": self.nu}

    def solve(self, split: str, indices: list[int], device: str | None) -> np.ndarray:
        return solve_indices(self, split, indices, device)

    def batch_order(self, split: str, indices: list[int]) -> np.ndarray:
        """Batches of similar amplitude share a time step that suits all of them: sort by max|u0|."""
        initial = sample_initial_conditions(self.family, self.seed, SPLIT_STREAMS[split], indices)
        return np.argsort(np.abs(initial.evaluate(self.grid.x)).max(axis=1), kind="stable")


def default_solver_resolution(nu: float, resolution: int) -> int:
    """Fine grid for `nu`: 2048 points, or the next power of two >= 4/nu for thinner shocks.

    The viscous shock width scales like nu, so the points needed do too; measured against Cole–Hopf
    for u0 = sin(2 pi x) this keeps the worst relative L2 error over t in [0, 2] near 1e-11 at
    nu = 0.01 (2048 points) and near 1e-5 at nu = 0.001 (4096 points; 2048 would give 9e-4).
    """
    needed = max(2048, 2 ** math.ceil(math.log2(4.0 / nu)))
    return max(needed, resolution * math.ceil(needed / resolution))


@dataclass(frozen=True)
class ShardResult:
    """One written (or kept) shard."""

    path: Path
    split: str
    first_index: int
    samples: int
    seconds: float
    reused: bool


def split_sizes(total: int, split: str) -> dict[str, int]:
    """Samples per split: all of `total` for one split, or 80/10/10 (train takes the rounding) for 'all'."""
    if total < 1:
        raise ValueError(f"samples must be >= 1, got {total}")
    if split != "all":
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join((*SPLITS, 'all'))}")
        return {split: total}
    sizes = {name: int(total * DEFAULT_SPLIT_FRACTIONS[name]) for name in ("val", "test")}
    sizes["train"] = total - sizes["val"] - sizes["test"]
    if min(sizes.values()) < 1:
        raise ValueError(f"--split all needs at least 10 samples to give every split one, got {total}")
    return {name: sizes[name] for name in SPLITS}


def solve_indices(spec: GenerationSpec, split: str, indices: list[int], device: str | None = None) -> np.ndarray:
    """Trajectories `indices` of `split` as float32 [len(indices), frames, resolution]."""
    initial = sample_initial_conditions(spec.family, spec.seed, SPLIT_STREAMS[split], indices)
    u0 = initial.evaluate(spec.grid.x)
    frames = solve_burgers(
        u0, spec.nu, spec.frame_dt, spec.frames, grid=spec.grid,
        out_stride=spec.solver_resolution // spec.resolution, control=spec.control, device=device,
    )
    return frames.astype(np.float32)


def generate_split(
    spec: DatasetSpec,
    split: str,
    samples: int,
    out_dir: Path,
    *,
    shard_size: int = 1000,
    batch_size: int = 32,
    workers: int = 1,
    device: str | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> list[ShardResult]:
    """Write shards {spec.shard_prefix}_{split}_NNN.h5 of at most `shard_size` samples each.

    A shard already on disk with identical generator parameters is kept, so an interrupted run
    resumes where it stopped.
    """
    if shard_size < 1 or batch_size < 1 or workers < 1:
        raise ValueError(f"shard_size, batch_size, workers must be >= 1; got {shard_size}, {batch_size}, {workers}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for shard, first in enumerate(range(0, samples, shard_size)):
        indices = list(range(first, min(first + shard_size, samples)))
        path = out_dir / shard_name(split, shard, spec.shard_prefix)
        params = {**spec.params(), "split": split, "first_index": first, "samples": len(indices)}
        started = time.monotonic()
        reused = _has_params(path, params)
        if not reused:
            u = _solve_shard(spec, split, indices, batch_size, workers, device)
            write_trajectories(
                path, u, spec.x, spec.frame_dt, equation=spec.equation, equation_params=spec.equation_params(),
                nu=spec.nu, seed=spec.seed, generator=params["generator"], params=params,
            )
        result = ShardResult(path, split, first, len(indices), time.monotonic() - started, reused)
        results.append(result)
        if on_shard:
            on_shard(result)
    return results


def generate_dataset(
    spec: DatasetSpec, samples: int, out_dir: str | Path, split: str = "all", **kwargs
) -> list[ShardResult]:
    """Generate the requested split(s) into `out_dir` and (re)write its manifest.json."""
    out_dir = Path(out_dir)
    results = []
    for name, count in split_sizes(samples, split).items():
        results += generate_split(spec, name, count, out_dir, **kwargs)
    write_manifest(out_dir, [r.path for r in results], extra={"generator": _jsonable(spec.params())})
    return results


def _solve_shard(
    spec: DatasetSpec, split: str, indices: list[int], batch_size: int, workers: int, device: str | None
) -> np.ndarray:
    order = spec.batch_order(split, indices)
    batches = [
        [indices[i] for i in order[start : start + batch_size]] for start in range(0, len(indices), batch_size)
    ]
    out = np.empty((len(indices), spec.frames, spec.resolution), dtype=np.float32)
    position = {index: row for row, index in enumerate(indices)}
    for batch, u in zip(batches, _map_batches(spec, split, batches, workers, device), strict=True):
        out[[position[i] for i in batch]] = u
    return out


def _map_batches(
    spec: DatasetSpec, split: str, batches: list[list[int]], workers: int, device: str | None
) -> Iterator[np.ndarray]:
    if workers == 1 or len(batches) == 1:
        for batch in batches:
            yield spec.solve(split, batch, device)
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads that a forked child would inherit broken.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(_solve_batch, *zip(*[(spec, split, b, device) for b in batches], strict=True))


def _solve_batch(spec: DatasetSpec, split: str, batch: list[int], device: str | None) -> np.ndarray:
    return spec.solve(split, batch, device)  # a module-level function: what a worker process can unpickle


def _has_params(path: Path, params: dict) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as handle:
            stored = handle.attrs.get(ATTR_PARAMS)
    except OSError:
        return False
    return stored is not None and json.loads(stored) == _jsonable(params)


def _jsonable(value: dict) -> dict:
    return json.loads(json.dumps(value, sort_keys=True))
