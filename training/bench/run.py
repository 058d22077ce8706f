"""`make bench-train`: generate a dataset, run the whole pipeline once per seed, and judge the aims.

    python -m training.bench.run                    # CPU preset (configs/bench_cpu.yaml, 3 seeds, ~30 min each on 2 busy cores)
    python -m training.bench.run --preset gpu       # configs/bench_gpu.yaml, 3 seeds, ≈ 10 min each on an H200 (estimated)
    python -m training.bench.run --steps-scale 0.25 # a shortened run (every stage's steps x 0.25)
    python -m training.bench.run --preset gpu --steps-scale 0.1 --samples 800 --seeds 1   # a ~2-3 min GPU smoke run

Every seed trains on the same data and is scored on the same test split; each aim's ratio is pooled
over the seeds with a bootstrap interval over seeds and test trajectories (`training.bench.judge`), and
it is met only when the interval is. Writes <out>/bench.json and <out>/bench.md (the table for
docs/benchmarks.md) next to the run dirs (<out>/run_.../seed<k>). Nothing here is a test.
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

from training.bench.judge import MET, MISSED, SeedRun, default_aims, judge, pooled
from training.config import load_config
from training.data.generate import GenerationSpec, generate_dataset
from training.data.ks_dataset import KsSpec
from training.data.spectral_solver import StepControl
from training.evaluation.scoring import ScoringSpec, statistics
from training.run.paths import atomic_write_bytes, atomic_write_json
from training.run.pipeline import PipelineOptions, run_pipeline
from training.stages.registry import LOOP_SECTIONS

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Preset:
    config: Path
    samples: int  # trajectories generated in total (80/10/10 split)
    resolution: int
    solver_resolution: int
    max_displacement: float  # generator time-step knob (1e-3: ~1e-7 relative solver error)
    device: str | None  # generator device
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: the aims are judged on intervals over all of them
    ensemble_size: int = 8  # samples per stochastic method (evaluate.ensemble_size; the configs' default is 4)
    refiner_target: float = 1.0  # refiner / operator (viscous Burgers: no worse; a chaotic control: 0.9)
    refiner_corr_target: float | None = None  # refiner / operator correlation time (chaotic control: 1.1)
    equation: str = "burgers"  # the dataset the generator makes (training.config.EQUATIONS)


PRESETS = {
    "cpu": Preset(REPO / "configs" / "bench_cpu.yaml", 400, 128, 1024, 1e-3, None),
    "gpu": Preset(REPO / "configs" / "bench_gpu.yaml", 4000, 256, 1024, 1e-3, "cuda", ensemble_size=16),
    # The positive control: chaotic Kuramoto-Sivashinsky, where refinement is known to help (PDE-Refiner).
    "ks": Preset(REPO / "configs" / "ks_bench.yaml", 400, 128, 256, 0.0, None, refiner_target=0.9,
                 refiner_corr_target=1.1, equation="ks"),
}


def make_data(preset: Preset, data_dir: Path) -> float:
    """Generate (or keep: the generator skips shards with identical parameters) the bench dataset."""
    started = time.perf_counter()
    if preset.equation == "ks":
        spec = KsSpec(seed=0, resolution=preset.resolution, solver_resolution=preset.solver_resolution)
    else:
        spec = GenerationSpec(nu=0.01, seed=0, resolution=preset.resolution,
                              solver_resolution=preset.solver_resolution, frames=201, frame_dt=0.01,
                              control=StepControl(max_displacement=preset.max_displacement))
    generate_dataset(spec, preset.samples, data_dir, shard_size=10**6,
                     batch_size=1024 if preset.device else 32, device=preset.device)
    return time.perf_counter() - started


def _scale_steps(block: dict, scale: float) -> None:
    """Steps and their intervals, in the section and in any sub-section (diffusion.pderefiner trains too)."""
    for key in ("steps", "ckpt_every", "log_every", "warmup_steps"):
        if isinstance(block.get(key), int):
            block[key] = max(1, int(block[key] * scale))
    for value in block.values():
        if isinstance(value, dict):
            _scale_steps(value, scale)


def scaled_config(config: Path, scale: float, out: Path, seed: int | None = None,
                  ensemble_size: int | None = None) -> Path:
    """The preset with every stage's steps (and checkpoint/log intervals) multiplied by `scale`, the
    training seed set (the data and the test split stay the same for every seed) and the ensemble size."""
    if scale == 1.0 and seed is None and ensemble_size is None:
        return config
    raw = yaml.safe_load(config.read_text())
    if ensemble_size is not None:
        raw.setdefault("evaluate", {})["ensemble_size"] = ensemble_size
    if scale != 1.0:
        for section in LOOP_SECTIONS:
            _scale_steps(raw.setdefault(section, {}), scale)
    suffix = (f"_x{scale:g}" if scale != 1.0 else "") + (f"_seed{seed}" if seed is not None else "")
    if seed is not None:
        raw["seed"] = seed
    raw["name"] = f"{raw.get('name', 'bench')}{suffix}"
    path = out / f"{config.stem}{suffix}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)  # validate before spending time
    return path


def absolute_aims(runs: list[SeedRun]) -> list[dict]:
    """Aims on one number per seed (no per-trajectory components): met only if every seed meets it."""
    values = [run.metrics["autoencoder_recon_nrmse_test"] for run in runs]
    target = 1e-2
    verdict = MET if max(values) <= target else MISSED if min(values) > target else "undecided"
    return [{"aim": "autoencoder reconstruction nRMSE (test), every seed", "measured": sum(values) / len(values),
             "low": min(values), "high": max(values), "direction": "<=", "target": target, "verdict": verdict,
             "seeds": [run.seed for run in runs], "interval": "min-max over seeds"}]


def method_table(runs: list[SeedRun], names: tuple[str, ...]) -> list[dict]:
    """PDEBench-protocol metrics of every method, pooled over seeds with their intervals."""
    rows = []
    spec = ScoringSpec.from_dict(runs[0].metrics["scoring"])
    available = statistics(spec, 1)
    for method, record in runs[0].metrics["methods"].items():
        row = {"method": method, "evaluations_per_step": record["evaluations_per_step"]}
        for name in names:
            if name not in available or (name in ENSEMBLE_ONLY and not record.get("stochastic")):
                continue
            found = pooled(runs, method, name, None)
            row[name] = [found.point, found.low, found.high]
        rows.append(row)
    return rows


ENSEMBLE_ONLY = ("spread_skill", "crps", "pdebench_nRMSE_ensmean")
TABLE_METRICS = ("pdebench_nRMSE", "pdebench_fRMSE_low", "pdebench_fRMSE_mid", "pdebench_fRMSE_high",
                 "pdebench_cRMSE", "pdebench_bRMSE", "pdearena_corr_steps_0.9", "rollout_nrmse", "crps",
                 "spread_skill")


def _target(row: dict) -> str:
    target = row["target"]
    return f"in [{target[0]:g}, {target[1]:g}]" if row["direction"] == "within" else f"{row['direction']} {target:g}"


def render(report: dict) -> str:
    seeds = ", ".join(str(s) for s in report["seeds"])
    lines = [f"### Training bench: preset `{report['preset']}` (steps x{report['steps_scale']:g}, seeds {seeds})", "",
             f"Machine: {report['machine']}. Data: {report['data']}. Generation took {report['data_wall_s']:.0f} s.",
             "", "Each ratio: mean over seeds, 95 % bootstrap interval over seeds and test trajectories (paired). "
             "Met only when the whole interval meets the target; missed when none of it does.", "",
             "| aim | measured | interval | target | verdict |", "|---|---|---|---|---|"]
    for row in report["aims"]:
        verdict = {"met": "met", "missed": "**missed**"}.get(row["verdict"], "undecided (interval spans the target)")
        lines.append(f"| {row['aim']} | {row['measured']:.3g} | [{row['low']:.3g}, {row['high']:.3g}] | "
                     f"{_target(row)} | {verdict} |")
    names = [n for n in TABLE_METRICS if any(n in r for r in report["methods"])]
    lines += ["", "| method | NFE/step | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for row in report["methods"]:
        cells = [f"{row[n][0]:.3g} [{row[n][1]:.3g}, {row[n][2]:.3g}]" if n in row else "-" for n in names]
        lines.append(f"| {row['method']} | {row['evaluations_per_step']} | " + " | ".join(cells) + " |")
    lines += ["", "| stage | steps | wall s (mean over seeds) | samples/s |", "|---|---|---|---|"]
    for name, stage in report["stages"].items():
        rate = "-" if stage["samples_per_s"] is None else f"{stage['samples_per_s']:.0f}"
        lines.append(f"| {name} | {stage['steps']} | {stage['wall_s']:.1f} | {rate} |")
    fno = report["fno_training"]
    fno_rate = "-" if fno["samples_per_s"] is None else f"{fno['samples_per_s']:.0f}"
    lines.append(f"| fno (in evaluate) | {fno['steps']} | {fno['wall_s']:.1f} | {fno_rate} |")
    lines += ["", f"Total pipeline wall time: {report['pipeline_wall_s']:.0f} s over {len(report['seeds'])} seeds.", "",
              f"Seed {report['seeds'][0]}'s evaluation:", "", report["metrics_table"]]
    return "\n".join(lines) + "\n"


def mean_stages(per_seed: list[dict]) -> dict:
    """Stage steps and rates of the first seed, wall time averaged over seeds."""
    stages = {name: dict(stage) for name, stage in per_seed[0].items()}
    for name, stage in stages.items():
        stage["wall_s"] = sum(s[name]["wall_s"] for s in per_seed if name in s) / len(per_seed)
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="bench folder (default /tmp/us_bench_<preset>)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    parser.add_argument("--samples", type=int, default=None, help="trajectories to generate (default: preset's)")
    parser.add_argument("--fresh", action="store_true", help="delete an earlier run dir first (data is kept)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="train seeds 0..N-1 (default: the preset's, at least 3); fewer than 3 is a smoke run")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds: need at least 1 seed (3 or more for a verdict), got {args.seeds}")
    preset = PRESETS[args.preset]
    if args.samples is not None:
        preset = dataclasses.replace(preset, samples=args.samples)
    out = args.out or Path(f"/tmp/us_bench_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    seeds = preset.seeds if args.seeds is None else tuple(range(args.seeds))
    if len(seeds) < 3:
        print(f"bench: {len(seeds)} seed(s): intervals over fewer than 3 seeds are a smoke test, not a verdict",
              flush=True)
    print(f"bench: preset {args.preset}, config {preset.config}, seeds {seeds}, out {out}", flush=True)
    data_dir = out / (f"data_{preset.samples}" if args.samples is not None else "data")
    data_wall = make_data(preset, data_dir)
    runs_dir = out / (f"run_x{args.steps_scale:g}" + (f"_n{args.samples}" if args.samples is not None else ""))
    wall, runs, stages = 0.0, [], []
    for seed in seeds:
        config = scaled_config(preset.config, args.steps_scale, out, seed=seed, ensemble_size=preset.ensemble_size)
        run_dir = runs_dir / f"seed{seed}"
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        started = time.perf_counter()
        code = run_pipeline(PipelineOptions(config_path=config, stage="all", run_dir=run_dir, data_dir=data_dir,
                                            run_name=f"bench-{args.preset}-seed{seed}", reset_cache=True))
        wall += time.perf_counter() - started
        if code != 0:
            print(f"bench: the pipeline failed for seed {seed} (exit {code}); see {run_dir}/logs", file=sys.stderr)
            return code
        runs.append(SeedRun.load(seed, run_dir / "metrics"))
        stages.append(json.loads((run_dir / "metrics" / "stages.json").read_text())["stages"])
    methods = runs[0].metrics["methods"]
    aims = default_aims(methods, preset.refiner_target, preset.refiner_corr_target)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    report = {
        "preset": args.preset, "steps_scale": args.steps_scale, "config": str(preset.config), "seeds": list(seeds),
        "machine": f"{platform.machine()}, {device}, torch {torch.__version__}",
        "data": f"{preset.samples} trajectories (80/10/10), {preset.resolution} points, 201 frames dt=0.01 "
                f"(solver {preset.solver_resolution} points, max displacement {preset.max_displacement:g})",
        "data_wall_s": data_wall, "pipeline_wall_s": wall,
        "aims": absolute_aims(runs) + judge(runs, aims),
        "methods": method_table(runs, TABLE_METRICS), "stages": mean_stages(stages),
        "fno_training": runs[0].metrics["fno_training"],
        "metrics_table": (runs_dir / f"seed{seeds[0]}" / "metrics" / "metrics.md").read_text(),
    }
    atomic_write_json(out / "bench.json", report)
    text = render(report)
    atomic_write_bytes(out / "bench.md", text.encode())
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
