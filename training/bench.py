"""`make bench-train`: generate a dataset, run the whole pipeline, and judge the results against the aims.

    python -m training.bench                       # CPU preset (configs/bench_cpu.yaml, ~15 min on 2 cores)
    python -m training.bench --preset gpu          # configs/bench_gpu.yaml, one command, ≈ 10 min on an H200 (estimated)
    python -m training.bench --steps-scale 0.25    # a shortened run (every stage's steps x 0.25)
    python -m training.bench --preset gpu --steps-scale 0.1 --samples 800   # a ~2-3 min GPU smoke run

Writes <out>/bench.json and <out>/bench.md (the table for docs/benchmarks.md) next to the run dir.
Aims are reported as measured, met or missed; nothing here is a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from training.config import load_config
from training.data.generate import GenerationSpec, generate_dataset
from training.data.spectral_solver import StepControl
from training.paths import atomic_write_bytes, atomic_write_json
from training.pipeline import PipelineOptions, run_pipeline

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Preset:
    config: Path
    samples: int  # trajectories generated in total (80/10/10 split)
    resolution: int
    solver_resolution: int
    max_displacement: float  # generator time-step knob (1e-3: ~1e-7 relative solver error)
    device: str | None  # generator device


PRESETS = {
    "cpu": Preset(REPO / "configs" / "bench_cpu.yaml", 400, 128, 1024, 1e-3, None),
    "gpu": Preset(REPO / "configs" / "bench_gpu.yaml", 4000, 256, 1024, 1e-3, "cuda"),
}


def make_data(preset: Preset, data_dir: Path) -> float:
    """Generate (or keep: the generator skips shards with identical parameters) the bench dataset."""
    started = time.perf_counter()
    spec = GenerationSpec(nu=0.01, seed=0, resolution=preset.resolution, solver_resolution=preset.solver_resolution,
                          frames=201, frame_dt=0.01, control=StepControl(max_displacement=preset.max_displacement))
    generate_dataset(spec, preset.samples, data_dir, shard_size=10**6,
                     batch_size=1024 if preset.device else 32, device=preset.device)
    return time.perf_counter() - started


def scaled_config(config: Path, scale: float, out: Path) -> Path:
    """The preset with every stage's steps (and checkpoint/log intervals) multiplied by `scale`."""
    if scale == 1.0:
        return config
    raw = yaml.safe_load(config.read_text())
    for section in ("autoencoder", "operator", "diffusion", "distill", "fno"):
        block = raw.setdefault(section, {})
        for key in ("steps", "ckpt_every", "log_every", "warmup_steps"):
            if key in block:
                block[key] = max(1, int(block[key] * scale))
    raw["name"] = f"{raw.get('name', 'bench')}_x{scale:g}"
    path = out / f"{config.stem}_x{scale:g}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)  # validate before spending time
    return path


def judge(metrics: dict, stages: dict) -> list[dict]:
    """The aims of the issue, each with the measured ratio and whether it was met."""
    m = metrics["methods"]
    rows = []

    def aim(name: str, measured: float, target: float, detail: str) -> None:
        rows.append({"aim": name, "measured": measured, "target": target, "met": bool(measured <= target),
                     "detail": detail})

    aim("autoencoder reconstruction nRMSE (test)", metrics["autoencoder_recon_nrmse_test"], 1e-2, "absolute")
    persistence = m["persistence"]["one_step_nrmse"]
    aim("operator one-step nRMSE / persistence", m["operator"]["one_step_nrmse"] / persistence, 0.1,
        f"operator {m['operator']['one_step_nrmse']:.3e}, persistence {persistence:.3e}")
    aim("operator rollout nRMSE / FNO (must be <= 1.5)", m["operator"]["rollout_nrmse"] / m["fno"]["rollout_nrmse"],
        1.0, f"operator {m['operator']['rollout_nrmse']:.3e}, FNO {m['fno']['rollout_nrmse']:.3e}")
    if "operator+diffusion" in m:
        refined, base = m["operator+diffusion"], m["operator"]
        aim("operator+diffusion rollout nRMSE / operator", refined["rollout_nrmse"] / base["rollout_nrmse"], 0.9,
            f"{refined['rollout_nrmse']:.3e} vs {base['rollout_nrmse']:.3e}")
        aim("operator+diffusion high-frequency fRMSE / operator", refined["frmse"]["high"] / base["frmse"]["high"],
            0.8, f"{refined['frmse']['high']:.3e} vs {base['frmse']['high']:.3e}")
        for steps, target in ((1, 1.10), (2, 1.05)):
            student = m.get(f"operator+student{steps}")
            if student is None:
                continue
            # refiner evaluations per time step: each method's count includes the operator's one
            teacher_nfe, student_nfe = refined["evaluations_per_step"] - 1, student["evaluations_per_step"] - 1
            aim(f"student {steps}-step rollout nRMSE / teacher", student["rollout_nrmse"] / refined["rollout_nrmse"],
                target, f"{student['rollout_nrmse']:.3e} vs {refined['rollout_nrmse']:.3e}; refiner evaluations "
                        f"per step {student_nfe} vs {teacher_nfe} ({teacher_nfe / student_nfe:.0f}x fewer, aim >= 10x)")
    return rows


def render(report: dict) -> str:
    lines = [f"### Training bench: preset `{report['preset']}` (steps x{report['steps_scale']:g})", "",
             f"Machine: {report['machine']}. Data: {report['data']}. Generation took {report['data_wall_s']:.0f} s.",
             "", "| aim | measured | target | met | detail |", "|---|---|---|---|---|"]
    for row in report["aims"]:
        lines.append(f"| {row['aim']} | {row['measured']:.3g} | {row['target']:g} | "
                     f"{'yes' if row['met'] else '**missed**'} | {row['detail']} |")
    lines += ["", "| stage | steps | wall s | samples/s |", "|---|---|---|---|"]
    for name, stage in report["stages"].items():
        rate = "-" if stage["samples_per_s"] is None else f"{stage['samples_per_s']:.0f}"
        lines.append(f"| {name} | {stage['steps']} | {stage['wall_s']:.1f} | {rate} |")
    fno = report["fno_training"]
    fno_rate = "-" if fno["samples_per_s"] is None else f"{fno['samples_per_s']:.0f}"
    lines.append(f"| fno (in evaluate) | {fno['steps']} | {fno['wall_s']:.1f} | {fno_rate} |")
    lines += ["", f"Total pipeline wall time: {report['pipeline_wall_s']:.0f} s.", "", report["metrics_table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="bench folder (default /tmp/us_bench_<preset>)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    parser.add_argument("--samples", type=int, default=None, help="trajectories to generate (default: preset's)")
    parser.add_argument("--fresh", action="store_true", help="delete an earlier run dir first (data is kept)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.samples is not None:
        preset = dataclasses.replace(preset, samples=args.samples)
    out = args.out or Path(f"/tmp/us_bench_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    config = scaled_config(preset.config, args.steps_scale, out)
    print(f"bench: preset {args.preset}, config {config}, out {out}", flush=True)
    data_dir = out / (f"data_{preset.samples}" if args.samples is not None else "data")
    data_wall = make_data(preset, data_dir)
    run_dir = out / (f"run_x{args.steps_scale:g}" + (f"_n{args.samples}" if args.samples is not None else ""))
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    code = run_pipeline(PipelineOptions(config_path=config, stage="all", run_dir=run_dir, data_dir=data_dir,
                                        run_name=f"bench-{args.preset}", reset_cache=True))
    wall = time.perf_counter() - started
    if code != 0:
        print(f"bench: the pipeline failed (exit {code}); see {run_dir}/logs", file=sys.stderr)
        return code
    metrics = json.loads((run_dir / "metrics" / "metrics.json").read_text())
    stages = json.loads((run_dir / "metrics" / "stages.json").read_text())["stages"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    report = {
        "preset": args.preset, "steps_scale": args.steps_scale, "config": str(config),
        "machine": f"{platform.machine()}, {device}, torch {torch.__version__}",
        "data": f"{preset.samples} trajectories (80/10/10), {preset.resolution} points, 201 frames dt=0.01 "
                f"(solver {preset.solver_resolution} points, max displacement {preset.max_displacement:g})",
        "data_wall_s": data_wall, "pipeline_wall_s": wall, "aims": judge(metrics, stages), "stages": stages,
        "fno_training": metrics["fno_training"],
        "metrics_table": (run_dir / "metrics" / "metrics.md").read_text(),
    }
    atomic_write_json(out / "bench.json", report)
    text = render(report)
    atomic_write_bytes(out / "bench.md", text.encode())
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
