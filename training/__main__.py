"""`python -m training run ...` (the pipeline), `python -m training evaluate ...` (a trained run on any dataset
file: training.evaluation.cli), `python -m training data ...` (the data tools) and `python -m training alert ...`
(a W&B alert on a run from outside it: training.run.alert; the instance agent's, when it ends the billing).

Every `run` flag has an environment fallback, which is how the on-instance supervisor drives it:
TRAIN_CONFIG, TRAIN_STAGE (default all), TRAIN_RUN_DIR (default: current dir), TRAIN_DATA_DIR (default
<run-dir>/data), RESET_CACHE (1 = rebuild the latent cache; default 1), TRAIN_RUN_NAME (bucket prefix
runs/<name>/; default: the config's name), TRAIN_SEED (overrides the config's seed). TRAIN_FAIL_AT_STAGE=<stage>
makes that stage raise mid-stage (a test hook for the failure path).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from run_contract import SEED_ENV
from training.config import STAGES


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def build_run_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m training run", description="Run the training pipeline.")
    parser.add_argument("--config", default=env.get("TRAIN_CONFIG"), help="YAML config (env TRAIN_CONFIG)")
    parser.add_argument("--stage", default=env.get("TRAIN_STAGE", "all"),
                        help=f"one of {', '.join(STAGES)} or all (env TRAIN_STAGE, default all)")
    parser.add_argument("--run-dir", default=env.get("TRAIN_RUN_DIR", "."), help="env TRAIN_RUN_DIR, default .")
    parser.add_argument("--data-dir", default=env.get("TRAIN_DATA_DIR"), help="env TRAIN_DATA_DIR, default <run-dir>/data")
    parser.add_argument("--run-name", default=env.get("TRAIN_RUN_NAME"), help="env TRAIN_RUN_NAME, default config name")
    parser.add_argument("--seed", type=int, default=os.environ.get(SEED_ENV) or None,
                        help=f"override the config's seed (env {SEED_ENV}); a resume continues with it, recorded")
    parser.add_argument("--reset-cache", action=argparse.BooleanOptionalAction, default=_flag("RESET_CACHE", "1"),
                        help="rebuild the latent cache (env RESET_CACHE, default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "evaluate", "data", "alert"):
        print("usage: python -m training {run,evaluate,data,alert} ...", file=sys.stderr)
        return 2
    if argv[0] == "alert":
        from training.run.alert import main as alert_main

        return alert_main(argv[1:])
    if argv[0] == "evaluate":
        from training.evaluation.cli import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv[0] == "data":
        from training.data.cli import main as data_main

        return data_main(argv[1:])
    args = build_run_parser().parse_args(argv[1:])
    if not args.config:
        print("PIPELINE FAILED stage=setup: no config: pass --config PATH or set TRAIN_CONFIG", flush=True)
        return 2
    from training.run.pipeline import PipelineOptions, run_pipeline

    run_dir = Path(args.run_dir)
    options = PipelineOptions(
        config_path=Path(args.config),
        stage=args.stage,
        run_dir=run_dir,
        data_dir=Path(args.data_dir) if args.data_dir else run_dir / "data",
        run_name=args.run_name or None,
        reset_cache=args.reset_cache,
        fail_at=os.environ.get("TRAIN_FAIL_AT_STAGE") or None,
        seed=args.seed,
    )
    return run_pipeline(options)


if __name__ == "__main__":
    sys.exit(main())
