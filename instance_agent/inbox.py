"""Requests to the agent from SSH sessions (the roles, `attach` in tmux): a JSON file in `<agent dir>/inbox/`,
answered by a JSON file in `<agent dir>/outbox/`. Files, not a socket: no server thread, a request survives
an agent restart, and both directories are root-only like the agent's state.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

OPS = ("status", "renew", "start-run", "stop-run")


class AgentUnavailable(RuntimeError):
    """No agent answered in time; says how to look."""


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)


def request(agent_dir: Path, op: str, args: dict[str, Any] | None = None, *, timeout: float = 30.0,
            poll: float = 0.2) -> dict[str, Any]:
    """Ask the agent; returns its answer `{"ok": bool, ...}`."""
    if op not in OPS:
        raise ValueError(f"unknown agent request {op!r}; allowed: {', '.join(OPS)}")
    rid = uuid.uuid4().hex
    _write(agent_dir / "inbox" / f"{rid}.json", {"op": op, "args": args or {}, "sent_at": time.time()})
    answer = agent_dir / "outbox" / f"{rid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer.exists():
            try:
                reply = json.loads(answer.read_text())
            except ValueError:
                time.sleep(poll)
                continue
            answer.unlink(missing_ok=True)
            return reply
        time.sleep(poll)
    (agent_dir / "inbox" / f"{rid}.json").unlink(missing_ok=True)
    raise AgentUnavailable(f"the instance agent did not answer {op!r} within {timeout:.0f}s; look at "
                           f"{agent_dir}/agent.log (it starts from the onstart script)")


def pending(agent_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """The requests waiting, oldest first, removed from the inbox as they are taken."""
    inbox = agent_dir / "inbox"
    if not inbox.is_dir():
        return []
    out = []
    for path in sorted(inbox.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        path.unlink(missing_ok=True)
        out.append((path.stem, payload if isinstance(payload, dict) else {}))
    return out


def answer(agent_dir: Path, rid: str, reply: dict[str, Any]) -> None:
    _write(agent_dir / "outbox" / f"{rid}.json", reply)
