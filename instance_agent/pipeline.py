"""The pipeline as a child process: its own session, output written to a log file (and, for tests, `echo`),
and the contract's marker lines (`PIPELINE STARTED …`, `PIPELINE FINISHED ok`, `PIPELINE FAILED …`) parsed.

Nothing is written to a terminal: a tmux session that is killed (its pty hung up) must not break the log
or block the pipeline on a full pipe. People watch the log through `instance_agent attach` in tmux.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from run_contract import Marker, parse_marker

__all__ = ["Marker", "PipelineProcess", "launch_command", "parse_marker"]

PR_SET_PDEATHSIG = 1


def launch_command(python: str, module_args: Sequence[str], *, nproc_per_node: int = 1) -> list[str]:
    """`python -m <module_args>` as one process, or under torchrun as one process per GPU.

    torchrun --standalone rendezvous on a free local port; it forwards a SIGTERM to every rank, and when one
    rank fails it stops the others and exits non-zero (the supervisor reads a failure either way). Its own
    restarts stay off: restarting (and resuming) is the supervisor's decision.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if nproc_per_node == 1:
        return [python, "-m", *module_args]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "--max_restarts=0", "-m", *module_args]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so no pipeline runs on
    unsupervised; SIGTERM makes it save its last checkpoint and exit."""
    # Not Linux (no prctl): the pipeline's own lock still keeps one pipeline per run dir.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PipelineProcess:
    """One run of the pipeline. Output goes, line by line, to `log_path` (appended) and to `echo`."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path,
                 echo: TextIO | None = None):
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.echo = echo
        self.started: Marker | None = None
        self.failed: Marker | None = None
        self.finished = False
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Its own session: a signal meant for the pipeline reaches its workers (DataLoader) too, and a terminal
        # hang-up in tmux does not reach it at all. torchrun's ranks have sessions of their own:
        # torchrun forwards a SIGTERM to each, and each dies with torchrun (training.run.runtime sets its
        # death signal).
        self._proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the reader thread
        self._reader = threading.Thread(target=self._pump, args=(log,), name="pipeline-output", daemon=True)
        self._reader.start()

    def poll(self) -> int | None:
        code = self._proc.poll() if self._proc else None
        if code is not None and self._reader:
            self._reader.join(timeout=10)  # the last lines (e.g. PIPELINE FAILED) are read before we report
        return code

    def wait(self, timeout: float) -> int | None:
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def terminate(self, grace_s: float) -> int:
        """SIGTERM to the whole group, SIGKILL after `grace_s`; returns the exit code."""
        if self.poll() is not None:
            return self.poll()
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if (code := self.wait(0.2)) is not None:
                return code
        self._signal_group(signal.SIGKILL)
        self._proc.wait(timeout=30)
        return self.poll()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def _pump(self, log) -> None:
        with log:
            for raw in iter(self._proc.stdout.readline, b""):
                log.write(raw)
                line = raw.decode("utf-8", "replace")
                if self.echo is not None:
                    with contextlib.suppress(OSError, ValueError):  # a closed or hung-up echo costs no log line
                        self.echo.write(line)
                        self.echo.flush()
                self._note(line)
        self._proc.stdout.close()

    def _note(self, line: str) -> None:
        marker = parse_marker(line)
        if marker is None:
            return
        if marker.kind == "started" and self.started is None:
            self.started = marker
        elif marker.kind == "failed":
            self.failed = marker
        elif marker.kind == "finished":
            self.finished = True
