"""`heartbeat.json`: the supervisor's word on the run, read by `status.yml` and by the train role.

The contract's keys (pid, started_at, updated_at, state, stage, step, elapsed_s, dph, cost_so_far,
max_runtime_hours, max_cost) plus a few that explain the end of a run (exit_code, error, phase, wandb_url).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from training.paths import atomic_write_json

HEARTBEAT_NAME = "heartbeat.json"

# `state`: how the run stands. The last four are final: the pipeline is no longer running.
STARTING, RUNNING = "starting", "running"
SUCCEEDED, FAILED, BUDGET_EXCEEDED, INTERRUPTED = "succeeded", "failed", "budget_exceeded", "interrupted"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, BUDGET_EXCEEDED, INTERRUPTED})

# `phase`: what the supervisor is doing; lets status.yml say "syncing" while the state already says "failed".
PHASE_PIPELINE, PHASE_SYNCING, PHASE_DESTROYING, PHASE_DONE = "pipeline", "syncing", "destroying", "done"


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
