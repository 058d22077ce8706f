"""One pipeline per run dir, enforced by the pipeline itself: an exclusive lock on a file in the run dir.

A second pipeline on the same run dir (a relaunch beside an orphaned run, a restarted supervisor while the
old pipeline still saves its checkpoint) waits for the lock a little, then refuses with a clear message,
instead of two writers corrupting one set of checkpoints.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from run_contract import PIPELINE_LOCK_FILE


class RunDirBusy(RuntimeError):
    """Another pipeline holds the run dir."""


class RunDirLock:
    def __init__(self, run_dir: Path, wait_s: float = 120.0, poll_s: float = 0.5):
        self.path = run_dir / PIPELINE_LOCK_FILE
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._handle = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "?"
                    handle.close()
                    raise RunDirBusy(f"another pipeline (pid {holder}) runs in {self.path.parent.parent}; one "
                                     "pipeline per run dir (waited {:.0f}s)".format(self.wait_s)) from None
                time.sleep(self.poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
