"""SIGTERM (a supervisor's stop, a preemption notice) ends the run cleanly.

Inside a training loop the signal only sets a flag: the loop finishes its step, saves last.pt and raises
`Terminated`, so the work up to that step is kept. Anywhere else `Terminated` is raised at once. Either way
the pipeline reports `PIPELINE FAILED stage=<stage>: Terminated: ...` and status.json says failed.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Terminated(RuntimeError):
    """The process was asked to stop (SIGTERM)."""


class StopRequest:
    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.in_loop = False
        self._previous = None

    def install(self) -> None:
        """Handle SIGTERM (main thread only; elsewhere, e.g. some test runners, leave signals alone)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        if not self.in_loop:
            raise Terminated(f"received {self.signal_name}")

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
