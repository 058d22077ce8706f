"""Weights & Biases run: online with WANDB_API_KEY, offline without, and not even imported when disabled.

The key is read by wandb itself from the environment; we never print, log or pass it anywhere.

Runs are organised the W&B way: `group` is the fleet's or sweep's base name (run_contract.RUN_GROUP_ENV,
passed by the control plane), `job_type` the kind of work ("train" or "evaluate"), `tags` the config name,
the GPU and interruptible/on-demand when known, and the launch facts (GPU, $/h, commit, ...) sit under
`config.launch`. Each stage's metrics are plotted against that stage's own step (`define_metric`), and a
failure or a stop raises a W&B alert.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from run_contract import LAUNCH_FACTS_ENV, RUN_GROUP_ENV

ALERT_TITLE_MAX = 63  # W&B refuses titles of 64 characters or more

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


def launch_facts(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The non-secret launch facts present in the environment, typed (dph float, interruptible bool)."""
    env = os.environ if env is None else env
    facts: dict[str, Any] = {}
    for fact, name in LAUNCH_FACTS_ENV.items():
        value = (env.get(name) or "").strip()
        if not value:
            continue
        if fact == "dph":
            try:
                facts[fact] = float(value)
            except ValueError:
                continue  # a malformed fact is left out, not a reason to fail a paid run
        elif fact == "interruptible":
            facts[fact] = value.lower() in ("1", "true", "yes", "on")
        else:
            facts[fact] = value
    return facts


def run_group(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return (env.get(RUN_GROUP_ENV) or "").strip() or None


def job_type_for(stages: Sequence[str]) -> str:
    """"evaluate" for evaluation alone, "train" for anything that trains."""
    return "evaluate" if list(stages) == ["evaluate"] else "train"


def tags_for(config_name: str, facts: Mapping[str, Any]) -> list[str]:
    tags = [f"config:{config_name}"]
    if facts.get("gpu"):
        tags.append(f"gpu:{facts['gpu']}")
    if "interruptible" in facts:
        tags.append("interruptible" if facts["interruptible"] else "on-demand")
    return [tag[:64] for tag in tags]  # W&B's tag length limit


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
              config: dict[str, Any], group: str | None = None, job_type: str | None = None,
              tags: Sequence[str] = (), stages: Sequence[str] = (), run_id: str | None = None) -> WandbRun:
        """`stages` get their own step axis: `<stage>/*` is plotted against `<stage>/step`."""
        mode = wandb_mode()
        if mode == "disabled":
            return cls.disabled()
        import wandb  # imported late: ~1 s, and tests run with WANDB_MODE=disabled

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", project),
            entity=os.environ.get("WANDB_ENTITY", entity),
            name=run_name,
            id=run_id or run_id_for(run_name),
            resume="allow",
            dir=str(run_dir),
            config=config,
            mode=mode,
            group=group,
            job_type=job_type,
            tags=list(tags) or None,
        )
        for stage in stages:
            run.define_metric(f"{stage}/step")
            run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
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

    def alert(self, title: str, text: str, level: str = "ERROR") -> None:
        """A W&B alert (Slack/email per the user's W&B settings); `level` INFO, WARN or ERROR. Never raises:
        an alert that cannot be sent must not hide the failure it reports."""
        if self._run is None:
            return
        import wandb

        with contextlib.suppress(Exception):  # see the docstring
            self._run.alert(title=title[:ALERT_TITLE_MAX], text=text[:4000], level=getattr(wandb.AlertLevel, level))

    def finish(self, exit_code: int = 0) -> None:
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None
