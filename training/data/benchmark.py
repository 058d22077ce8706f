"""Measure the generator: accuracy against Cole–Hopf and time per trajectory.

    python -m training.data.benchmark [--device cuda] [--batch 32] [--samples 64] [--workers N]

Accuracy: u0 = sin(2 pi x) to t = 2 (201 frames), relative L2 error on the stored 256-point grid,
maximum over frames and at the last frame, for nu = 0.01 and 0.001 and several solver grids.
Speed: PDEBench-family initial conditions, 201 frames, 256 stored points, default solver grid.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from training.data.cole_hopf import SineSeries, cole_hopf_solution
from training.data.generate import GenerationSpec, generate_split, solve_indices
from training.data.spectral_solver import SolverGrid, solve_burgers

STORED = 256


def accuracy_row(nu: float, resolution: int, device: str | None) -> tuple[float, float, float]:
    """(max relative L2 error over frames, error at t=2, seconds) for one sine trajectory."""
    initial = SineSeries(amplitudes=(1.0,), wavenumbers=(1,), phases=(0.0,))
    grid = SolverGrid(resolution, offset=0.5 / STORED)
    started = time.perf_counter()
    frames = solve_burgers(
        initial(grid.x)[None], nu, 0.01, 201, grid=grid, out_stride=resolution // STORED, device=device
    )[0]
    seconds = time.perf_counter() - started
    x = grid.x[:: resolution // STORED]
    errors = []
    for k in range(1, 201):
        exact = cole_hopf_solution(initial, nu, x, 0.01 * k)
        errors.append(np.linalg.norm(frames[k] - exact) / np.linalg.norm(exact))
    return max(errors), errors[-1], seconds


def speed_row(nu: float, samples: int, batch: int, workers: int, device: str | None) -> float:
    """Seconds per PDEBench-family trajectory (201 frames, default solver grid, 256 stored)."""
    spec = GenerationSpec(nu=nu)
    if workers == 1:
        solve_indices(spec, "train", [0], device)  # warm-up (torch/CUDA initialisation)
        started = time.perf_counter()
        for first in range(0, samples, batch):
            solve_indices(spec, "train", list(range(first, min(first + batch, samples))), device)
        return (time.perf_counter() - started) / samples
    with tempfile.TemporaryDirectory() as scratch:
        from pathlib import Path

        started = time.perf_counter()
        generate_split(spec, "train", samples, Path(scratch), batch_size=batch, workers=workers)
        return (time.perf_counter() - started) / samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.benchmark", description=__doc__)
    parser.add_argument("--device", default=None, help="torch device (cuda); default numpy")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--grids", default="1024,2048,4096")
    args = parser.parse_args(argv)
    backend = args.device or "numpy"
    if not args.skip_accuracy:
        print(f"accuracy vs Cole-Hopf, u0 = sin(2 pi x), t in [0, 2], 201 frames, {STORED} stored points ({backend})")
        print("  nu      grid   max rel. L2 over frames   rel. L2 at t=2   seconds")
        for nu in (0.01, 0.001):
            for resolution in (int(g) for g in args.grids.split(",")):
                worst, last, seconds = accuracy_row(nu, resolution, args.device)
                print(f"  {nu:<7g} {resolution:<6d} {worst:<25.2e} {last:<16.2e} {seconds:.2f}")
    print(f"speed: PDEBench-family ICs, 201 frames, {STORED} stored, batch {args.batch}, "
          f"workers {args.workers}, {backend}")
    for nu in (0.01, 0.001):
        per = speed_row(nu, args.samples, args.batch, args.workers, args.device)
        grid = GenerationSpec(nu=nu).solver_resolution
        print(f"  nu={nu:g} ({grid}-point solve): {per:.3f} s/trajectory over {args.samples} trajectories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
