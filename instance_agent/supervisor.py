"""The supervisor: run the pipeline within its budget, keep the heartbeat, then sync; the agent ends the billing.

    pipeline running (heartbeat every N s, light sync every M s)
      ├─ exit 0 ─────────────────► succeeded ───────┐
      ├─ exit ≠ 0 ───────────────► failed ──────────┤
      ├─ over time or money ─────► budget_exceeded ─┤─► final sync (retried) ─► heartbeat phase `ending`,
      ├─ SIGINT / SIGTERM ───────► interrupted ─────┤   `synced` true/false; the agent (our parent) then
      └─ anything else going wrong ► failed ────────┘   destroys, stops or keeps the instance (agent.py)

The budget counts from the instance's creation (`created_at`, from the agent), not from our own start, so a
restarted supervisor or a relaunch never gets a fresh one. Nothing here talks to the Vast API.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import TextIO

import run_contract as contract
from instance_agent import heartbeat as hb
from instance_agent.artifacts import sync_artifacts
from instance_agent.budget import Budget
from instance_agent.layout import PIPELINE_LOG, STATE_DIR
from instance_agent.pipeline import PipelineProcess, launch_command
from instance_agent.policy import SupervisorPolicy
from instance_agent.rclone import Bucket, BucketConfigError

log = logging.getLogger(__name__)

# The pipeline never needs the instance's API key: least privilege for code that loads data and checkpoints.
WITHHELD_FROM_PIPELINE = ("CONTAINER_API_KEY", "VAST_API_KEY")


class SupervisorBusyError(RuntimeError):
    """Another supervisor already runs in this code dir."""


def pipeline_command(policy: SupervisorPolicy) -> list[str]:
    return launch_command(policy.python, ["training", "run", "--config", policy.train_config,
                                          "--stage", policy.train_stage], nproc_per_node=policy.nproc_per_node)


def pipeline_env(policy: SupervisorPolicy, environ: Mapping[str, str]) -> dict[str, str]:
    """The contract's TRAIN_* variables over the instance's environment (which carries the secrets)."""
    env = {k: v for k, v in environ.items() if k not in WITHHELD_FROM_PIPELINE}
    env.update(policy.pipeline_env)
    env.update({
        "TRAIN_CONFIG": policy.train_config,
        "TRAIN_STAGE": policy.train_stage,
        "RESET_CACHE": str(policy.reset_cache),
        "TRAIN_RUN_DIR": policy.code_dir,
        "TRAIN_DATA_DIR": str(policy.code_path / "data"),
        "TRAIN_RUN_NAME": policy.run_name,
        "PYTHONUNBUFFERED": "1",  # marker lines reach us as they are printed
    })
    return env


class Supervisor:
    def __init__(
        self, policy: SupervisorPolicy, *, environ: Mapping[str, str], command: Sequence[str] | None = None,
        bucket: Bucket | None = None, echo: TextIO | None = None, clock: Callable[[], float] = time.time,
        created_at: float | None = None, starts: int = 1, sleep: Callable[[float], None] = time.sleep,
    ):
        self.policy = policy
        self.environ = dict(environ)
        self.command = list(command) if command else pipeline_command(policy)
        self._bucket = bucket
        self.echo = echo
        self.clock = clock
        self.sleep = sleep
        self.created_at = clock() if created_at is None else created_at
        self.starts = starts
        self.budget = Budget(policy.max_runtime_hours, policy.max_cost, policy.dph)
        self.heartbeat_path = policy.code_path / hb.HEARTBEAT_NAME
        self._stop_signal: int | None = None

    # -- entry point -------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run everything; the exit code says how (run_contract.supervisor_exit_code: 0 only for a synced success)."""
        with self._lock(), self._signals():
            beat = hb.Heartbeat(
                pid=os.getpid(), run_name=self.policy.run_name, started_at=self._run_started_at(),
                updated_at=hb.utc_now(), dph=self.policy.dph, max_runtime_hours=self.policy.max_runtime_hours,
                max_cost=self.policy.max_cost, auto_shutdown=self.policy.auto_shutdown,
                cost_so_far=self.budget.cost_so_far(self.clock() - self.created_at),
                created_at=self.created_at, supervisor_starts=self.starts,
            )
            hb.write_heartbeat(self.heartbeat_path, beat)
            try:
                self.bucket()  # before any work: a run whose artifacts cannot be saved should not start
                self._run_pipeline(beat)
            except BucketConfigError as exc:
                beat.state, beat.error = hb.FAILED, str(exc)
                log.error("%s", exc)
            except Exception as exc:  # whatever went wrong, the finish below runs: the run is never left
                log.exception("the supervisor failed while the pipeline ran")
                beat.state, beat.error = hb.FAILED, f"supervisor error: {type(exc).__name__}: {exc}"
            finally:
                self._stop_pipeline_if_running()
            self._finish(beat)
            return contract.supervisor_exit_code(beat.state, beat.synced)

    def _run_started_at(self) -> str:
        """A restarted supervisor keeps the run's start (same run, not final): the heartbeat tells one story."""
        old = hb.read_heartbeat(self.heartbeat_path)
        if old and old.run_name == self.policy.run_name and not old.is_final:
            return old.started_at
        return hb.utc_now()

    def _stop_pipeline_if_running(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            log.warning("stopping the pipeline before finishing")
            try:
                proc.terminate(self.policy.stop_grace_s)
            except Exception:  # the finish must still run
                log.exception("could not stop the pipeline")

    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = Bucket.from_env(self.environ)
        return self._bucket

    def sync(self, *, include_checkpoints: bool) -> None:
        report = sync_artifacts(self.bucket(), self.policy.code_path, self.policy.artifact_prefix(),
                                include_checkpoints=include_checkpoints, timeout=self.policy.sync_timeout_s)
        log.info("synced artifacts to %s in %.1fs", report.destination, report.seconds)

    # -- the pipeline ------------------------------------------------------------------------------------

    def _run_pipeline(self, beat: hb.Heartbeat) -> None:
        if reason := self.budget.exceeded(self.clock() - self.created_at):
            beat.state, beat.error = hb.BUDGET_EXCEEDED, reason  # a restart after the ceiling: do not start again
            log.error("budget: %s; not starting the pipeline", reason)
            return
        while True:
            proc = self._proc = PipelineProcess(
                self.command, env=pipeline_env(self.policy, self.environ), cwd=self.policy.code_path,
                log_path=self.policy.code_path / PIPELINE_LOG, echo=self.echo)
            log.info("starting the pipeline (supervisor start %d, pipeline restart %d): %s", self.starts,
                     beat.pipeline_restarts, " ".join(self.command))
            proc.start()
            beat.state = hb.RUNNING
            code = self._watch(proc, beat)
            # Killed by a signal nobody here sent (kill -9, the OOM killer), without its own failure line: a
            # crash, not a result. It resumes from its checkpoints, a bounded number of times.
            if (beat.state == hb.RUNNING and code is not None and code < 0 and proc.failed is None
                    and beat.pipeline_restarts < self.policy.restart_limit):
                beat.pipeline_restarts += 1
                log.error("the pipeline was killed (%s) without a failure line: restarting it (%d of %d)",
                          signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code,
                          beat.pipeline_restarts, self.policy.restart_limit)
                continue
            break
        beat.exit_code = code
        self._update(beat, proc, self.clock() - self.created_at)
        if beat.state == hb.RUNNING:
            beat.state = hb.SUCCEEDED if code == 0 else hb.FAILED
        if beat.state == hb.FAILED and beat.error is None:
            beat.error = (f"stage {proc.failed.fields.get('stage', '?')}: {proc.failed.message}" if proc.failed
                          else f"pipeline exited with code {code} (see {PIPELINE_LOG})")
        log.info("pipeline ended: %s (exit code %s)%s", beat.state, code, f": {beat.error}" if beat.error else "")

    def _watch(self, proc: PipelineProcess, beat: hb.Heartbeat) -> int | None:
        """Heartbeat, budget, signals and light syncs until the pipeline exits; returns its exit code."""
        next_beat = next_sync = self.clock()
        if self.policy.sync_every_s:
            next_sync += self.policy.sync_every_s
        while (code := proc.wait(0.5)) is None:
            elapsed = self.clock() - self.created_at
            if self._stop_signal is not None:
                name = signal.Signals(self._stop_signal).name
                log.warning("got %s: stopping the pipeline", name)
                code = proc.terminate(self.policy.stop_grace_s)
                beat.state, beat.error, beat.stop_reason = hb.INTERRUPTED, f"supervisor got {name}", name
                break
            if reason := self.budget.exceeded(elapsed):
                log.error("budget: %s; stopping the pipeline", reason)
                code = proc.terminate(self.policy.stop_grace_s)
                beat.state, beat.error = hb.BUDGET_EXCEEDED, reason
                break
            # PIPELINE STARTED is written at once: the train role is waiting for it.
            if self.clock() >= next_beat or (proc.started and not beat.pipeline_started):
                self._update(beat, proc, elapsed)
                self._write(beat)
                next_beat = self.clock() + self.policy.heartbeat_every_s
            if self.policy.sync_every_s and self.clock() >= next_sync:
                self._try(lambda: self.sync(include_checkpoints=False), "periodic sync")
                next_sync = self.clock() + self.policy.sync_every_s
        return code

    def _update(self, beat: hb.Heartbeat, proc: PipelineProcess, elapsed: float) -> None:
        beat.elapsed_s = round(elapsed, 1)
        beat.cost_so_far = self.budget.cost_so_far(elapsed)
        if proc.started and not beat.pipeline_started:
            beat.pipeline_started = True
            beat.wandb_url = proc.started.fields.get("wandb")
        status = hb.read_json(self.policy.code_path / "status.json") or {}
        beat.stage = status.get("stage") or beat.stage
        beat.step = status.get("step", beat.step)
        beat.total_steps = status.get("total_steps", beat.total_steps)
        beat.wandb_url = status.get("wandb_url") or beat.wandb_url

    # -- the end -----------------------------------------------------------------------------------------

    def _finish(self, beat: hb.Heartbeat) -> None:
        """The final sync, retried; then the heartbeat hands over to the agent (phase `ending`)."""
        beat.phase = hb.PHASE_SYNCING
        self._write(beat)
        error = None
        for attempt in range(self.policy.final_sync_attempts):
            if attempt:
                self.sleep(min(5.0 * 2 ** (attempt - 1), 60.0))
            if (error := self._try(lambda: self.sync(include_checkpoints=True), "final sync")) is None:
                break
        beat.synced, beat.sync_error = error is None, error
        beat.cost_so_far = self.budget.cost_so_far(self.clock() - self.created_at)
        beat.phase = hb.PHASE_ENDING
        self._write(beat)
        # The heartbeat in the bucket says how the run ended even when the instance is gone.
        if beat.synced:
            self._try(lambda: self.bucket().copy_file(self.heartbeat_path, self.policy.artifact_prefix()
                                                      + "/" + hb.HEARTBEAT_NAME), "heartbeat upload")

    def _write(self, beat: hb.Heartbeat) -> None:
        try:
            hb.write_heartbeat(self.heartbeat_path, beat)
        except OSError as exc:  # a full disk must not stop the finish: the sync and the agent still run
            log.error("could not write %s: %s", self.heartbeat_path, exc)

    def _try(self, action: Callable[[], object], what: str) -> str | None:
        """Failures at the end must not stop the steps after them; returns the error, if any."""
        try:
            action()
        except Exception as exc:
            log.error("%s failed: %s", what, exc)
            return f"{type(exc).__name__}: {exc}"[:500]
        return None

    # -- process plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _lock(self):
        path = self.policy.code_path / STATE_DIR / "supervisor.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise SupervisorBusyError(
                    f"another supervisor (pid {handle.read().strip() or '?'}) already runs in {self.policy.code_dir}; "
                    "see tmux attach -t training") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield

    @contextmanager
    def _signals(self):
        def stop(signum, _frame):
            self._stop_signal = signum

        # SIGHUP is ignored: a dropped SSH session or closed terminal must not end a paid run.
        wanted = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: signal.SIG_IGN}
        previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
