"""`heartbeat.json`: the supervisor's word on the run while it runs, the agent's once it ends the billing.

Read by `status.yml`, the train role and the tests; synced to the bucket with the run. Costs and budgets
count from the instance's creation (`created_at`), so restarts and relaunches never reset them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import run_contract as contract
from run_contract import (  # noqa: F401 - the vocabulary, re-exported for the supervisor and agent
    BUDGET_EXCEEDED,
    FAILED,
    FINAL_STATES,
    INTERRUPTED,
    PHASE_DONE,
    PHASE_ENDING,
    PHASE_PIPELINE,
    PHASE_SYNCING,
    RUNNING,
    STARTING,
    SUCCEEDED,
)
from training.run.paths import atomic_write_json

HEARTBEAT_NAME = contract.HEARTBEAT_FILE


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Heartbeat:
    pid: int
    run_name: str
    started_at: str
    updated_at: str
    state: str = STARTING
    phase: str = PHASE_PIPELINE
    stage: str | None = None
    step: int | None = None
    total_steps: int | None = None
    elapsed_s: float = 0.0
    dph: float | None = None
    cost_so_far: float | None = None
    max_runtime_hours: float | None = None
    max_cost: float | None = None
    auto_shutdown: bool = True
    pipeline_started: bool = False  # the pipeline printed PIPELINE STARTED
    wandb_url: str | None = None
    exit_code: int | None = None
    error: str | None = None
    created_at: float | None = None  # the instance's creation (epoch s): budgets and cost count from here
    supervisor_starts: int = 1  # > 1: the agent restarted a crashed supervisor (the run resumed)
    pipeline_restarts: int = 0  # the supervisor restarted a pipeline killed by a signal (it resumed)
    synced: bool | None = None  # the final sync reached the bucket (None: not tried yet)
    sync_error: str | None = None
    stop_reason: str | None = None  # who or what stopped the pipeline (Ctrl-C in tmux, a container stop...)
    ending: str | None = None  # how the agent ended the billing: destroyed | stopped | kept
    ending_reason: str | None = None
    ending_attempts: int = 0
    ending_error: str | None = None
    updated_epoch: float | None = None  # updated_at as epoch seconds: status.yml flags a stale heartbeat by it

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Heartbeat:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def write_heartbeat(path: Path, heartbeat: Heartbeat) -> None:
    heartbeat.updated_at = utc_now()
    heartbeat.updated_epoch = round(time.time(), 3)
    atomic_write_json(path, heartbeat.to_dict())


def read_heartbeat(path: Path) -> Heartbeat | None:
    raw = read_json(path)
    try:
        return Heartbeat.from_dict(raw) if raw else None
    except TypeError:
        return None  # a heartbeat from another version of the supervisor: treat as absent


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is absent or not (yet) a complete object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
