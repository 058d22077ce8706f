"""`python -m training data ...`: generate Burgers or KS shards (+ manifest), optionally upload them to B2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.config import EQUATION_BURGERS, EQUATION_KS, EQUATIONS
from training.data.errors import DataFileError
from training.data.generate import DatasetSpec, GenerationSpec, ShardResult, generate_dataset
from training.data.ks_dataset import KsSpec
from training.data.layout import MANIFEST_NAME, SPLITS
from training.data.spectral_solver import StepControl


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training data",
        description="Generate 1D viscous Burgers (default) or Kuramoto-Sivashinsky trajectories in PDEBench's "
                    "layout with a spectral ETDRK4 solver.",
    )
    parser.add_argument(
        "--equation", choices=EQUATIONS, default=EQUATION_BURGERS,
        help="burgers (default): u_t + (u^2/2)_x = (nu/pi) u_xx on [0, 1); ks: u_t = -u u_x - u_xx - u_xxxx "
             "on [0, L), PDE-Refiner's setup",
    )
    parser.add_argument(
        "--nu", type=_positive_float, default=None, help="Burgers viscosity parameter (diffusion nu/pi); required "
                                                          "for burgers",
    )
    parser.add_argument(
        "--samples", type=_positive_int, required=True,
        help="trajectories in total; with --split all divided 80/10/10 into train/val/test",
    )
    parser.add_argument("--resolution", type=_positive_int, default=256, help="stored grid points (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the initial conditions (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory for shards and manifest.json")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all", help="which split(s) to write")
    parser.add_argument("--frames", type=_positive_int, default=201, help="stored frames incl. t=0 (default 201)")
    parser.add_argument(
        "--frame-dt", type=_positive_float, default=None, help="time between frames (default 0.01; ks: 0.2)"
    )
    parser.add_argument(
        "--solver-resolution", type=_positive_int, default=None,
        help="fine grid of the solver, a multiple of --resolution (default: 2048, or 4096 for nu=0.001; ks: 256)",
    )
    parser.add_argument(
        "--max-displacement", type=_positive_float, default=None,
        help=f"burgers time-step accuracy knob: max h*max|u| (default {StepControl().max_displacement:g}, "
             "~1e-11 error at nu=0.01)",
    )
    ks = parser.add_argument_group("ks only")
    ks.add_argument("--domain-length", type=_positive_float, default=None, help="domain length L (default 64)")
    ks.add_argument(
        "--burn-in", type=float, default=None,
        help="time solved and discarded before frame 0, a multiple of --frame-dt (default 72: 360 frames)",
    )
    ks.add_argument("--max-step", type=_positive_float, default=None, help="ETDRK4 step bound (default 0.05)")
    parser.add_argument("--shard-size", type=_positive_int, default=1000, help="trajectories per file")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=None,
        help="trajectories solved together (default 32 on numpy, 1024 on a torch device)",
    )
    parser.add_argument("--workers", type=_positive_int, default=1, help="solver processes (default 1)")
    parser.add_argument(
        "--device", default="auto",
        help="'numpy', a torch device such as 'cuda' or 'cpu', or 'auto': cuda if available, else numpy",
    )
    parser.add_argument("--upload", action="store_true", help="upload shards + manifest to B2 (B2_* env vars)")
    parser.add_argument(
        "--prefix", default=None,
        help="bucket prefix for --upload (default datasets/burgers1d_nu<nu>_x<res>; ks: datasets/ks1d_L<L>_x<res>)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the data command; returns a process exit status (0 ok, 2 bad input, 1 failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage / help
        return int(exc.code or 0)
    try:
        spec = build_spec(args)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    store = None
    if args.upload:
        # Check credentials before spending time on generation.
        from training.store.bucket import ObjectStore, StorageConfigError

        try:
            store = ObjectStore.from_env()
        except StorageConfigError as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
    device = resolve_device(args.device)
    batch_size = args.batch_size or (32 if device is None else 1024)
    try:
        results = generate_dataset(
            spec, args.samples, args.out, split=args.split, shard_size=args.shard_size,
            batch_size=batch_size, workers=args.workers, device=device, on_shard=_print_shard,
        )
    except (ValueError, DataFileError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    total = sum(r.samples for r in results)
    print(f"wrote {len(results)} shard(s), {total} trajectories, manifest {Path(args.out) / MANIFEST_NAME}")
    if store is not None:
        from training.store.bucket import StorageError

        prefix = args.prefix or default_prefix(spec)
        try:
            report = store.sync_up(args.out, prefix)
        except StorageError as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 1
        print(
            f"uploaded {len(report.transferred)} file(s), {len(report.skipped)} already present "
            f"to s3://{store.bucket}/{prefix}/"
        )
    return 0


def build_spec(args: argparse.Namespace) -> DatasetSpec:
    """The generation spec the arguments describe (unset options: the spec's defaults); ValueError names an
    option that does not fit the equation."""
    common = {"seed": args.seed, "resolution": args.resolution, "solver_resolution": args.solver_resolution,
              "frames": args.frames, **_given(frame_dt=args.frame_dt)}
    burgers_only = {"--nu": args.nu, "--max-displacement": args.max_displacement}
    ks_only = {"--domain-length": args.domain_length, "--burn-in": args.burn_in, "--max-step": args.max_step}
    if args.equation == EQUATION_KS:
        _refuse(burgers_only, "Burgers option(s), not allowed with --equation ks")
        return KsSpec(**common, **_given(length=args.domain_length, burn_in=args.burn_in, max_step=args.max_step))
    _refuse(ks_only, "KS option(s), only allowed with --equation ks")
    if args.nu is None:
        raise ValueError("--nu is required for --equation burgers (e.g. --nu 0.01)")
    if args.max_displacement is not None:
        common["control"] = StepControl(max_displacement=args.max_displacement)
    return GenerationSpec(nu=args.nu, **common)


def _given(**values: object) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def _refuse(options: dict[str, object], why: str) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: {why}")


def default_prefix(spec: DatasetSpec) -> str:
    """Bucket prefix named after what distinguishes the dataset: viscosity (Burgers) or domain length (KS)."""
    if isinstance(spec, KsSpec):
        return f"datasets/ks1d_L{spec.length:g}_x{spec.resolution}"
    return f"datasets/burgers1d_nu{spec.nu:g}_x{spec.resolution}"


def resolve_device(name: str) -> str | None:
    """None (numpy) or a torch device name; 'auto' picks cuda when torch sees a GPU."""
    if name == "numpy":
        return None
    if name == "auto":
        try:
            import torch
        except ImportError:
            return None
        return "cuda" if torch.cuda.is_available() else None
    return name


def _print_shard(result: ShardResult) -> None:
    size_mb = result.path.stat().st_size / 1e6
    timing = (
        "kept: identical parameters" if result.reused
        else f"{result.seconds:.1f} s, {result.seconds / result.samples:.3f} s/trajectory"
    )
    print(f"{result.path.name}: {result.samples} trajectories, {size_mb:.1f} MB ({timing})", flush=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value

