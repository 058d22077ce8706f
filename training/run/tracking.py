"""What a person or the supervisor sees: stage logs with progress lines, status.json, and W&B.

Only rank 0 writes. Progress lines go to stdout and to `logs/<stage>.log` (written by us, so they
exist also when stdout is a tmux pane); status.json is rewritten atomically at most every
`status_every_s` seconds by a heartbeat thread (so it stays fresh during long steps, cache building or
evaluation) and at every stage change.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import threading
import time
from typing import Any, TextIO

from training.run.paths import RunPaths, atomic_write_json
from training.run.wandb_run import WandbRun


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(dt.timedelta(seconds=int(round(seconds))))


class Tracker:
    """One per pipeline process; silent on ranks other than 0."""

    def __init__(self, paths: RunPaths, run_name: str, *, is_main: bool, wandb: WandbRun,
                 status_every_s: float = 5.0, stdout: TextIO | None = None) -> None:
        self.paths = paths
        self.run_name = run_name
        self.is_main = is_main
        self.wandb = wandb
        self.status_every_s = status_every_s
        self.stdout = stdout or sys.stdout
        self._stage_log: TextIO | None = None
        self._last_status = 0.0
        self._status: dict[str, Any] = {
            "run_name": run_name, "stage": None, "step": 0, "total_steps": 0, "loss": None,
            "samples_per_s": None, "eta_s": None, "state": "running", "error": None,
            "wandb_url": wandb.url, "updated_at": _utc_now(),
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if is_main:
            self._heartbeat = threading.Thread(target=self._beat, name="status-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.status_every_s):
            self.write_status(force=True)

    # -- lines -------------------------------------------------------------------------------------
    def line(self, message: str) -> None:
        """Print one line to stdout and to the current stage log."""
        if not self.is_main:
            return
        print(message, file=self.stdout, flush=True)
        if self._stage_log is not None:
            self._stage_log.write(message + "\n")
            self._stage_log.flush()

    def start_stage(self, stage: str, total_steps: int = 0) -> None:
        self.end_stage()
        if self.is_main:
            self.paths.logs.mkdir(parents=True, exist_ok=True)
            self._stage_log = self.paths.stage_log(stage).open("a", buffering=1)
        self.write_status(force=True, stage=stage, step=0, total_steps=total_steps, loss=None, samples_per_s=None,
                          eta_s=None, state="running", error=None, _steps_per_s=None)

    def end_stage(self) -> None:
        if self._stage_log is not None:
            self._stage_log.close()
            self._stage_log = None

    # -- progress ----------------------------------------------------------------------------------
    def step(self, step: int, total: int) -> None:
        """Called every optimiser step (cheap: no sync, no I/O); the heartbeat publishes it."""
        rate = self._status.get("_steps_per_s")
        eta = (max(total - step, 0) / rate) if rate else None
        with self._lock:
            self._status.update(step=step, total_steps=total, eta_s=None if eta is None else round(eta, 1))

    def progress(self, stage: str, step: int, total: int, loss: float | None, *, samples_per_s: float | None,
                 steps_per_s: float | None, print_line: bool) -> None:
        """Record a measured window; print a progress line when asked; status.json follows at its own pace."""
        eta = (max(total - step, 0) / steps_per_s) if steps_per_s else None
        with self._lock:
            self._status.update(stage=stage, step=step, total_steps=total, loss=loss,
                                samples_per_s=samples_per_s, eta_s=None if eta is None else round(eta, 1),
                                _steps_per_s=steps_per_s or self._status.get("_steps_per_s"))
        if print_line:
            loss_text = "nan" if loss is None else f"{loss:.4e}"
            rate = "?" if samples_per_s is None else f"{samples_per_s:.0f}"
            self.line(f"[{stage}] step {step}/{total} loss {loss_text} samples/s {rate} eta {format_eta(eta)}")
        self.write_status()

    def write_status(self, *, force: bool = False, **fields: Any) -> None:
        with self._lock:
            self._status.update(fields)
            now = time.monotonic()
            if not self.is_main or (not force and now - self._last_status < self.status_every_s):
                return
            self._last_status = now
            self._status["updated_at"] = _utc_now()
            snapshot = {key: value for key, value in self._status.items() if not key.startswith("_")}
            atomic_write_json(self.paths.status, snapshot)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        if self.is_main:
            self.wandb.log(metrics)

    def close(self, state: str, error: str | None = None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        self.write_status(force=True, state=state, error=error,
                          eta_s=0 if state == "done" else self._status["eta_s"])
        self.end_stage()
        if self.is_main:
            self.wandb.finish(exit_code=0 if state == "done" else 1)
