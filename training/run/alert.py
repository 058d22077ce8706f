"""`python -m training alert`: one W&B alert on a run from outside its pipeline.

The instance agent sends one when it ends a run's billing (destroyed, stopped or kept), after the pipeline
has exited: the alert resumes the run's W&B run (its id comes from the run name) and raises it there, so it
reaches whoever gets that run's alerts. Only an online run can notify anyone; offline (no WANDB_API_KEY),
the record would be written after the final sync and lost with the instance, so it is skipped, saying so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.config import load_config
from training.run.wandb_run import WandbRun, wandb_mode

LEVELS = ("INFO", "WARN", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training alert", description="Raise a W&B alert on a run.")
    parser.add_argument("--config", required=True, help="the run's config (its wandb project and entity)")
    parser.add_argument("--run-name", required=True, help="the run's name (its W&B id)")
    parser.add_argument("--title", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--level", choices=LEVELS, default="INFO")
    parser.add_argument("--run-dir", default=".", help="where wandb keeps its files (default .)")
    parser.add_argument("--failed", action="store_true",
                        help="the run did not succeed: the resumed W&B run finishes as failed again")
    return parser


def send_alert(*, config: Path, run_name: str, title: str, text: str, level: str, run_dir: Path,
               failed: bool = False) -> str:
    """Resume the run's W&B run, alert, finish it as it ended (a failed run stays failed); its URL."""
    cfg = load_config(config)
    run = WandbRun.start(run_name=run_name, project=cfg.wandb.project, entity=cfg.wandb.entity, run_dir=run_dir,
                         config={})
    try:
        run.alert(title, text, level=level)
    finally:
        run.finish(exit_code=1 if failed else 0)
    return run.url


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = wandb_mode()
    if mode != "online":
        print(f"W&B is {mode} here: an alert needs an online run (WANDB_API_KEY); skipped", file=sys.stderr)
        return 0
    url = send_alert(config=Path(args.config), run_name=args.run_name, title=args.title, text=args.text,
                     level=args.level, run_dir=Path(args.run_dir), failed=args.failed)
    print(f"alert sent: {args.title} ({url})")
    return 0
