"""Noticing that the controller is going away while a launch waits: signals and a dead ansible-playbook.

How a module process learns of Ctrl-C (ansible-core 2.19, read in executor/task_queue_manager.py and
executor/process/worker.py): a terminal's SIGINT reaches only `ansible-playbook` (each worker calls
`setsid`); its handler forwards the signal to every worker, and each worker forwards it with `killpg` to its
own process group, which holds the module process, then exits at once. SIGTERM takes the same path. So the
module gets the signal itself, outlives its worker, and has to clean up on its own. A SIGKILLed
`ansible-playbook` sends nothing: the module process then only notices that its controller is gone, which
`Cancel.check()` does by watching the ansible processes above it.

`Cancel` is shared by every thread of one module run. The signal handler trips it and raises `Interrupted`
in the main thread once (a second signal during the cleanup is only noted, so it cannot cut the cleanup
short); the other threads raise `Interrupted` at their next `check()` or `sleep()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, which it stands for
    """The launch must stop now and destroy what it created. A BaseException, so `except Exception` in a
    library cannot swallow it."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of `pid`, from /proc; None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), fields[19]


def _is_ansible(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(a.decode(errors="replace")).startswith("ansible") for a in argv[:2])


def controller_ancestors(pid: int | None = None) -> list[tuple[int, str]]:
    """The processes above `pid` up to the topmost ansible one (shell, worker, ansible-playbook): (pid, start).

    Empty when no ansible process is above (the module run by something else); then only the parent is watched.
    """
    chain: list[tuple[int, str]] = []
    current = _stat(pid or os.getpid())
    while current is not None and current[0] > 1 and len(chain) < 32:
        parent = current[0]
        info = _stat(parent)
        if info is None:
            break
        chain.append((parent, info[1]))
        current = info
    last_ansible = max((i for i, (p, _) in enumerate(chain) if _is_ansible(p)), default=-1)
    return chain[:last_ansible + 1]


class Cancel:
    """A one-way flag: tripped by a signal or by the controller's death; `check()` raises `Interrupted`."""

    def __init__(self, *, watch_controller: bool = False):
        self._event = threading.Event()
        self.why: str | None = None
        self.signals_seen: list[str] = []
        self._watched = controller_ancestors() if watch_controller else []
        self._parent = os.getppid() if watch_controller else None

    @property
    def tripped(self) -> bool:
        return self._event.is_set()

    def trip(self, why: str) -> None:
        if not self._event.is_set():
            self.why = why
            self._event.set()

    def controller_gone(self) -> str | None:
        for pid, started in self._watched:
            info = _stat(pid)
            if info is None or info[1] != started:
                return f"the controller process {pid} (ansible) is gone"
        if self._parent is not None and not self._watched and os.getppid() != self._parent:
            return f"the parent process {self._parent} is gone"
        return None

    def check(self) -> None:
        if not self._event.is_set():
            gone = self.controller_gone()
            if gone:
                self.trip(gone)
        if self._event.is_set():
            raise Interrupted(self.why or "interrupted")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake (and raise) as soon as the flag trips; checks the controller at least every second."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._event.wait(min(1.0, left))


NEVER = Cancel()  # for callers that cannot be interrupted (tests, the instance side)


@contextlib.contextmanager
def signals_trip(cancel: Cancel) -> Iterator[Cancel]:
    """While inside: SIGINT, SIGTERM and SIGHUP trip `cancel` and raise `Interrupted` in the main thread, once."""
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        cancel.signals_seen.append(name)
        if cancel.tripped:
            return  # already cleaning up: let it finish
        cancel.trip(f"{name} received")
        raise Interrupted(cancel.why)

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED_SIGNALS}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
