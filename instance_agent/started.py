"""Wait until the pipeline says `PIPELINE STARTED` (through the heartbeat), or explain why it will not."""

from __future__ import annotations

from pathlib import Path

from instance_agent.heartbeat import Heartbeat, read_heartbeat
from vastkit.retry import Deadline


class NotStartedError(RuntimeError):
    """The pipeline ended, or did not start in time; carries the tail of its log."""


def wait_started(heartbeat_path: Path, log_path: Path, *, timeout: float, poll: float = 0.5) -> Heartbeat:
    deadline = Deadline(timeout)
    while True:
        beat = read_heartbeat(heartbeat_path)
        if beat and beat.pipeline_started:
            return beat
        if beat and beat.is_final:
            raise NotStartedError(f"the run ended ({beat.state}) before the pipeline started: {beat.error}\n"
                                  + _tail(log_path))
        if deadline.expired:
            state = f"heartbeat state {beat.state}" if beat else f"no {heartbeat_path.name} yet"
            raise NotStartedError(f"the pipeline did not print PIPELINE STARTED within {timeout:.0f}s ({state}); "
                                  f"look with: tmux attach -t training\n" + _tail(log_path))
        deadline.sleep(poll)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"({path} not written)"
    return f"last lines of {path}:\n" + "\n".join(text)
