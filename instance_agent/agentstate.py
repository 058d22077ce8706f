"""The agent's own record, `<agent dir>/state.json`: when the instance was created, the lease, the run handed
over, and how the billing is being ended. Kept on the instance's disk, so a container restart resumes it.

Stage 0 (onstart) writes the first version (`created_at`, `lease_deadline`); the agent adds the rest. No
secrets: the agent's environment holds those.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "state.json"
READY_NAME = "agent.ready"  # bootstrap writes it: stage 0 then becomes the agent
PID_NAME = "agent.pid"
LOG_NAME = "agent.log"


@dataclass
class RunRecord:
    """The run handed over: its name, its policy file and the limits that count from the instance's creation."""

    name: str
    policy_path: str
    handed_over_at: float
    auto_shutdown: bool
    max_runtime_hours: float
    max_cost: float | None = None
    dph: float | None = None
    ceiling_grace_s: float = 900.0
    destroy_fallback_s: float = 600.0
    restart_limit: int = 3
    starts: int = 0  # supervisor starts (container restarts included)
    crashes: int = 0  # supervisor exits without a final heartbeat
    user_stop: str | None = None  # e.g. "Ctrl-C in tmux session training"
    outcome: str | None = None  # the final run state once the supervisor finished
    synced: bool | None = None
    error: str | None = None


@dataclass
class Ending:
    """How the billing is being ended; kept until done so a restart carries on with it."""

    action: str  # run_contract.DESTROYED | STOPPED | KEPT
    reason: str
    started_at: float
    attempts: int = 0
    last_error: str | None = None
    stop_requested: bool = False  # the destroy fallback asked for a stop
    done: bool = False


@dataclass
class AgentState:
    created_at: float
    lease_deadline: float | None = None
    instance_id: int | None = None
    dph: float | None = None  # the instance's $/h as the API reports it
    run: RunRecord | None = None
    ending: Ending | None = None
    history: list[str] = field(default_factory=list)  # one line per decision, newest last (capped)

    def note(self, line: str, keep: int = 50) -> None:
        self.history = [*self.history, line][-keep:]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgentState:
        run = raw.get("run")
        ending = raw.get("ending")
        return cls(
            created_at=float(raw["created_at"]),
            lease_deadline=raw.get("lease_deadline"),
            instance_id=raw.get("instance_id"),
            dph=raw.get("dph"),
            run=RunRecord(**_known(RunRecord, run)) if isinstance(run, dict) else None,
            ending=Ending(**_known(Ending, ending)) if isinstance(ending, dict) else None,
            history=list(raw.get("history") or []),
        )


def _known(cls, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def load_state(agent_dir: Path) -> AgentState | None:
    try:
        raw = json.loads((agent_dir / STATE_NAME).read_text())
        return AgentState.from_dict(raw)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(agent_dir: Path, state: AgentState) -> None:
    """Atomic and root-only. A full disk must not stop the agent: the caller logs and carries on in memory."""
    agent_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = agent_dir / STATE_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state.to_dict(), handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
