"""What tmux session `training` shows: the run's log as it grows, and its state. Ctrl-C there ends the run the
way a person means it (the agent syncs, then destroys; with auto_shutdown=false it stops the instance).

The viewer only reads files and sends the agent a request: killing the tmux session, or Ctrl-C, can never
break the pipeline's log or block it, and nothing secret is in this process's environment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import run_contract as contract
from instance_agent import heartbeat as hb
from instance_agent import inbox


def follow(code_dir: Path, agent_dir: Path, *, out: TextIO = sys.stdout, poll: float = 0.5,
           until: float | None = None) -> int:
    log_path = code_dir / contract.PIPELINE_LOG
    position, last_state = 0, None
    out.write(f"== run log {log_path} (Ctrl-C here stops the run: sync, then destroy) ==\n")
    while until is None or time.monotonic() < until:
        try:
            position = _copy_new(log_path, position, out)
            beat = hb.read_heartbeat(code_dir / hb.HEARTBEAT_NAME)
            state = None if beat is None else (beat.state, beat.phase, beat.ending)
            if beat is not None and state != last_state:
                out.write(f"== {beat.run_name}: {beat.state}, phase {beat.phase}"
                          + (f", {beat.ending}: {beat.ending_reason}" if beat.ending else "") + " ==\n")
                last_state = state
            out.flush()
            time.sleep(poll)
        except KeyboardInterrupt:
            out.write("== Ctrl-C: asking the agent to stop the run (sync, then end the billing) ==\n")
            out.flush()
            try:
                reply = inbox.request(agent_dir, "stop-run", {"reason": f"Ctrl-C in tmux session {contract.TMUX_SESSION}"})
                out.write(f"== agent: {reply} ==\n")
            except inbox.AgentUnavailable as exc:
                out.write(f"== {exc} ==\n")
    return 0


def _copy_new(path: Path, position: int, out: TextIO) -> int:
    try:
        size = path.stat().st_size
    except OSError:
        return position
    if size < position:  # truncated or replaced: start over
        position = 0
    if size > position:
        with open(path, "rb") as handle:
            handle.seek(position)
            chunk = handle.read(size - position)
        out.write(chunk.decode("utf-8", "replace"))
        position += len(chunk)
    return position
