"""Weights & Biases run: online with WANDB_API_KEY, offline without, and not even imported when disabled.

The key is read by wandb itself from the environment; we never print, log or pass it anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def wandb_mode(env: dict[str, str] | None = None) -> str:
    """WANDB_MODE when set (tests use `disabled`), else online with an API key and offline without."""
    env = os.environ if env is None else env
    explicit = env.get("WANDB_MODE", "").strip().lower()
    if explicit in ("online", "offline", "disabled"):
        return explicit
    if explicit in ("dryrun",):
        return "offline"
    return "online" if env.get("WANDB_API_KEY") else "offline"


def run_id_for(run_name: str) -> str:
    """A stable W&B id from the run name, so a preempted run resumes the same W&B run elsewhere."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_name)[:64]


class WandbRun:
    """Thin holder of a wandb run (or nothing); `url` is the URL, offline dir, or 'disabled'."""

    def __init__(self, run: Any | None, url: str) -> None:
        self._run = run
        self.url = url

    @classmethod
    def disabled(cls) -> WandbRun:
        return cls(None, "disabled")

    @classmethod
    def start(cls, *, run_name: str, project: str, entity: str | None, run_dir: Path,
              config: dict[str, Any]) -> WandbRun:
        mode = wandb_mode()
        if mode == "disabled":
            return cls.disabled()
        import wandb  # imported late: ~1 s, and tests run with WANDB_MODE=disabled

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", project),
            entity=os.environ.get("WANDB_ENTITY", entity),
            name=run_name,
            id=run_id_for(run_name),
            resume="allow",
            dir=str(run_dir),
            config=config,
            mode=mode,
        )
        url = run.url if mode == "online" and run.url else str(Path(run.dir).parent)
        return cls(run, url)

    def log(self, metrics: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.log(metrics)

    def log_images(self, images: dict[str, Path]) -> None:
        if self._run is None:
            return
        import wandb

        self._run.log({name: wandb.Image(str(path)) for name, path in images.items()})

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None
