"""`python -m training evaluate`: score a trained run's checkpoints on any dataset file, ours or PDEBench's.

    python -m training evaluate --run-dir DIR --data FILE [FILE ...]
    python -m training evaluate --run NAME --data FILE ...   # checkpoints from s3://$B2_BUCKET/runs/NAME/

The methods and the scoring are the evaluate stage's own (`training.stages.evaluate`: build_methods,
predict, score; its bootstrap intervals and comparisons); the FNO baseline is included when the run
trained one (`checkpoints/evaluate/fno_final.pt`). Reports go to
`--out` (default `<run-dir>/evaluations/<file stem>/`, or `evaluations/<run>/<file stem>/` for --run).

A file is evaluated only if its physics is the model's. Viscosity, frame spacing and domain are read
from the file (`nu` attribute or PDEBench's `Nu<value>` file name, `t-coordinate`, `x-coordinate`).
Burgers' equation u_t + u u_x = (nu/pi) u_xx keeps its form under x -> x/s, t -> t/s with nu -> nu/s (u
unchanged), so a file on a domain s times the model's is equivalent to viscosity nu/s and frame spacing
dt/s on the model's domain. PDEBench's files span (-1, 1), ours [0, 1): PDEBench's Nu0.01 file is
our nu=0.005 at half its dt. The field values need no change, so a file whose rescaled viscosity,
frame spacing and resolution equal the model's is evaluated as is; any other is refused, the message
giving the equivalent values and, where one exists, the stride or file that would match.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.config import EQUATION_BURGERS, Config
from training.data import DataFileError, load_burgers
from training.data.manifest import sha256_of
from training.data.reader import equation_of, periodic_domain
from training.evaluation.inference import (
    RunNotFoundError,
    fetch_run,
    load_context,
    run_config,
    trained_data_facts,
    trained_methods,
)
from training.evaluation.report import MethodMetrics, write_reports
from training.run.wandb_run import WandbRun, run_group, tags_for
from training.stages.autoencoder import reconstruction_nrmse
from training.stages.evaluate import evaluate_methods
from training.stages.upstream import MissingUpstreamError, load_autoencoder
from training.store.checkpoint import CheckpointError

OUR_DOMAIN = (0.0, 1.0)  # training.data.generate's grid: assumed for runs that predate recorded data facts
_RTOL = 1e-3


class DataMismatchError(ValueError):
    """The file's physics (viscosity, frame spacing, resolution) is not the one the model was trained on."""


@dataclass(frozen=True)
class Physics:
    nu: float | None
    dt: float | None
    domain: tuple[float, float]
    resolution: int | None
    equation: str = EQUATION_BURGERS

    @property
    def length(self) -> float:
        return self.domain[1] - self.domain[0]

    def on_domain_of(self, other: Physics) -> Physics:
        """The same problem rescaled to `other`'s domain length: nu and dt scale with 1/length."""
        s = self.length / other.length
        return Physics(nu=None if self.nu is None else self.nu / s, dt=None if self.dt is None else self.dt / s,
                       domain=other.domain, resolution=self.resolution, equation=self.equation)


def check_match(path: Path, file: Physics, trained: Physics, *, t_stride: int, x_stride: int) -> None:
    """Raise DataMismatchError listing every difference, each with the equivalent values and a way out.

    The rescaling to the model's domain holds for Burgers only; any other equation needs the model's domain.
    """
    if file.equation != trained.equation:
        raise DataMismatchError(f"{path}: the file holds the {file.equation!r} equation; the model was trained on "
                                f"{trained.equation!r}")
    if file.equation != EQUATION_BURGERS and not math.isclose(file.length, trained.length, rel_tol=_RTOL):
        raise DataMismatchError(f"{path}: domain length {_g(file.length)}, the model was trained on "
                                f"{_g(trained.length)} ({file.equation} has no rescaling to another domain)")
    same = file.on_domain_of(trained)
    where = f"x in ({_g(file.domain[0])}, {_g(file.domain[1])})"
    model_where = f"the model's domain ({_g(trained.domain[0])}, {_g(trained.domain[1])})"
    problems = []
    if trained.nu is not None and file.nu is None:  # (an equation without viscosity, KS, skips both)
        problems.append("viscosity unknown: the file has no 'nu' attribute and no Nu<value> in its name; "
                        "pass --nu VALUE")
    elif trained.nu is not None and not math.isclose(same.nu, trained.nu, rel_tol=_RTOL):
        scale = file.length / trained.length
        problems.append(
            f"viscosity: the file has nu={_g(file.nu)} on {where}, which on {model_where} is nu={_g(same.nu)} "
            f"(nu and dt scale with 1/domain length); the model was trained at nu={_g(trained.nu)}. "
            f"A matching file on {where} has nu={_g(trained.nu * scale)}")
    if trained.resolution and file.resolution != trained.resolution:
        total = file.resolution * x_stride
        hint = f"; pass --x-stride {total // trained.resolution}" if total % trained.resolution == 0 else ""
        problems.append(f"resolution: {file.resolution} points after x_stride={x_stride}, the model was trained "
                        f"on {trained.resolution}{hint}")
    if trained.dt and same.dt and not math.isclose(same.dt, trained.dt, rel_tol=_RTOL):
        ratio = t_stride * trained.dt / same.dt
        hint = f"; pass --t-stride {round(ratio)}" if abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1 else ""
        problems.append(f"frame spacing: dt={_g(file.dt)} after t_stride={t_stride} on {where} is dt={_g(same.dt)} "
                        f"on {model_where}; the model steps dt={_g(trained.dt)}{hint}")
    if problems:
        raise DataMismatchError(f"{path}: not the physics this model was trained on: " + "; ".join(problems))


def trained_physics(run_dir: Path, cfg: Config) -> tuple[Physics, list[str]]:
    facts = trained_data_facts(run_dir)
    if facts:
        return Physics(nu=facts.get("nu"), dt=facts.get("dt"), domain=tuple(facts["domain"]),
                       resolution=facts.get("resolution"), equation=facts.get("equation", EQUATION_BURGERS)), []
    return (Physics(nu=cfg.data.nu, dt=None, domain=OUR_DOMAIN, resolution=None),
            [f"the run predates recorded data facts: assuming nu={cfg.data.nu} (its config) on our domain "
             f"{OUR_DOMAIN}; frame spacing and resolution not checked"])


@dataclass
class EvaluateOptions:
    data: list[Path]
    run_dir: Path | None = None
    run: str | None = None  # a run in the bucket (B2_* from the environment)
    out: Path | None = None
    device: str = "auto"
    t_stride: int | None = None  # None: the run's data.t_stride
    x_stride: int | None = None
    max_samples: int | None = None
    rollout_steps: int | None = None  # None: evaluate.rollout_steps, capped by the file's frames
    nu: float | None = None  # for a file that does not say
    notes: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    path: Path
    u: torch.Tensor  # [N, T, X]: whole trajectories (PDEBench's protocol scores them to the end)
    x: torch.Tensor
    dt: float
    steps: int
    physics: Physics
    sha256: str


def evaluate_run(options: EvaluateOptions) -> dict[str, Path]:
    """Evaluate every file; returns file -> report folder. Every file is checked before any is evaluated."""
    if (options.run_dir is None) == (options.run is None):
        raise ValueError("give exactly one of --run-dir DIR (a local run) or --run NAME (a run in the bucket)")
    if not options.data:
        raise ValueError("--data: give at least one dataset file")
    with ExitStack() as stack:
        if options.run is not None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evaluate-")))
            fetch_run(options.run, run_dir)
            out_root = Path("evaluations") / options.run
        else:
            run_dir = options.run_dir
            out_root = run_dir / "evaluations"
        cfg = run_config(run_dir)
        run_name = options.run or cfg.name
        trained, notes = trained_physics(run_dir, cfg)
        options.notes.extend(notes)
        prepared = [_prepare(path, cfg, trained, options) for path in options.data]
        ctx = load_context(run_dir, device=options.device, run_name=run_name)
        methods = trained_methods(ctx)
        written = {}
        for item in prepared:
            out = options.out if options.out and len(prepared) == 1 else (options.out or out_root) / item.path.stem
            written[str(item.path)] = _evaluate_file(ctx, methods, item, trained, out, run_name, options.notes)
        return written


def _prepare(path: Path, cfg: Config, trained: Physics, options: EvaluateOptions) -> Prepared:
    t_stride = options.t_stride or cfg.data.t_stride
    x_stride = options.x_stride or cfg.data.x_stride
    rows = slice(0, options.max_samples) if options.max_samples else None
    data = load_burgers(path, t_stride=t_stride, x_stride=x_stride, samples=rows)
    nu = data.nu if data.nu is not None else options.nu
    if data.nu is not None and options.nu is not None and not math.isclose(data.nu, options.nu, rel_tol=_RTOL):
        raise DataMismatchError(f"{path}: --nu {options.nu} contradicts the file's own nu={data.nu}")
    physics = Physics(nu=nu, dt=data.dt, domain=periodic_domain(path), resolution=data.resolution,
                      equation=equation_of(path))
    check_match(path, physics, trained, t_stride=t_stride, x_stride=x_stride)
    steps = options.rollout_steps or min(cfg.evaluate.rollout_steps, data.n_frames - 1)
    if steps > data.n_frames - 1:
        raise DataMismatchError(f"{path}: --rollout-steps {steps} needs {steps + 1} frames; the file has "
                                f"{data.n_frames} after t_stride={t_stride}")
    return Prepared(path, torch.from_numpy(data.u), torch.from_numpy(data.x), data.dt, steps, physics,
                    sha256_of(path))


def _evaluate_file(ctx, methods, item: Prepared, trained: Physics, out: Path, run_name: str,
                   notes: list[str]) -> Path:
    """The evaluate stage's scoring (training.stages.evaluate.evaluate_methods), on one file."""
    cfg, device, evaluate = ctx.cfg, ctx.runtime.device, ctx.cfg.evaluate

    def progress(_index: int, result: MethodMetrics) -> None:
        print(f"[evaluate] {item.path.name}: {result.summary_line()}", flush=True)

    found = evaluate_methods(methods, item.u, item.x, item.dt, evaluate, device, steps=item.steps,
                             on_method=progress)
    recon = reconstruction_nrmse(load_autoencoder(ctx).model, found.u, device, evaluate.batch_size)
    extra: dict[str, Any] = {
        "evaluated_run": run_name, "data_file": str(item.path), "data_sha256": item.sha256,
        "file_physics": asdict(item.physics), "trained_physics": asdict(trained),
        "equivalent_on_trained_domain": asdict(item.physics.on_domain_of(trained)), "notes": notes,
        "autoencoder_recon_nrmse_test": recon, "test_trajectories": int(found.u.shape[0]),
        "rollout_steps": item.steps, "dt": item.dt, **found.report_facts(evaluate),
    }
    write_reports(out, found.results, found.ratios, found.rollouts, found.u, item.x, item.dt, extra,
                  components=found.components, plots_enabled=evaluate.plots)
    _log_to_wandb(cfg, run_name, item, out, found.results)
    print(f"[evaluate] {item.path.name}: reports in {out}", flush=True)
    return out


def _log_to_wandb(cfg: Config, run_name: str, item: Prepared, out: Path, results: dict[str, MethodMetrics]) -> None:
    """Its own W&B run (job_type evaluate) in the trained run's group, so the two sit side by side."""
    wandb = WandbRun.start(run_name=f"{run_name}-eval-{item.path.stem}", project=cfg.wandb.project,
                           entity=cfg.wandb.entity, run_dir=out,
                           config={"evaluated_run": run_name, "data_file": item.path.name,
                                   "data_sha256": item.sha256, **cfg.to_dict()},
                           group=run_group() or run_name, job_type="evaluate", tags=tags_for(cfg.name, {}))
    wandb.summary({f"evaluate/{name}/{key}": value for name, metric in results.items()
                   for key, value in metric.scalars().items()})
    wandb.finish()


def _g(value: float) -> str:
    return f"{value:.6g}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training evaluate",
                                     description="Evaluate a trained run's checkpoints on dataset files.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="a local run dir (with checkpoints/)")
    source.add_argument("--run", help="a run name in the bucket (runs/NAME/checkpoints/; B2_* from the environment)")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="HDF5 files, ours or PDEBench's")
    parser.add_argument("--out", type=Path, help="report folder (default: see the module docs)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--t-stride", type=int, help="default: the run's data.t_stride")
    parser.add_argument("--x-stride", type=int, help="default: the run's data.x_stride")
    parser.add_argument("--max-samples", type=int, help="evaluate the first N trajectories only")
    parser.add_argument("--rollout-steps", type=int, help="default: evaluate.rollout_steps (capped by the file)")
    parser.add_argument("--nu", type=float, help="viscosity of a file that does not record one")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = EvaluateOptions(data=args.data, run_dir=args.run_dir, run=args.run, out=args.out, device=args.device,
                              t_stride=args.t_stride, x_stride=args.x_stride, max_samples=args.max_samples,
                              rollout_steps=args.rollout_steps, nu=args.nu)
    try:
        evaluate_run(options)
    except (DataMismatchError, DataFileError, RunNotFoundError, CheckpointError, MissingUpstreamError,
            ValueError, RuntimeError) as exc:
        print(f"evaluate: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 2
    for note in options.notes:
        print(f"evaluate: note: {note}", flush=True)
    return 0
