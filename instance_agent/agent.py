"""The instance agent: the one process on the instance that answers for the money.

Started by onstart (stage 0 execs it) at every container start, with the container's environment:

    no run yet ── lease (from creation) runs out ──────────────────────────► destroy (confirmed)
        │ start-run (the train role hands the run over: the lease becomes the run's budget)
        ▼
    supervisor (child, restarted after a crash up to restart_limit; after a container restart the run
        │        resumes from its checkpoints) ── past budget + ceiling_grace_s: killed, synced, ended
        ▼ exits with a final heartbeat (phase `ending`)
    ending.decide: destroyed | stopped (sync failed, or no auto_shutdown) | kept ── retried until confirmed;
                   destroy falls back to stop after destroy_fallback_s, and keeps trying both

A budget counts from the instance's creation (`created_at`: the API's start_date, or stage 0's first
start when the API cannot be reached) and holds after the run too: a kept instance is stopped at its
ceiling. Every decision goes to the agent log, the heartbeat and (when reachable) the bucket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import run_contract as contract
from instance_agent import heartbeat as hb
from instance_agent import inbox
from instance_agent.agentstate import PID_NAME, AgentState, Ending, RunRecord, load_state, save_state
from instance_agent.ending import Decision, EndingApi, backoff, decide
from instance_agent.policy import PolicyError, SupervisorPolicy, load_policy

log = logging.getLogger("instance_agent")
CREATED_AT_ENV = "INSTANCE_AGENT_CREATED_AT"
STARTS_ENV = "INSTANCE_AGENT_STARTS"
# What a tmux pane may see: never the container's secrets.
VIEWER_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM")
# Below this much free space a failed write is put down to a full disk (a checkpoint is larger).
LOW_DISK_BYTES = 64 * 2**20
# How long the end of the billing waits for the W&B alert that announces it (the destroy ends the container,
# and the alert with it); a bounded delay, never a reason to keep billing.
ALERT_WAIT_S = 30.0


class Agent:
    def __init__(
        self, *, agent_dir: Path, code_dir: Path, environ: Mapping[str, str],
        api_factory: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time,
        python: str = contract.PYTHON, tick_s: float = 1.0, sync: Callable[[SupervisorPolicy], None] | None = None,
        viewer: bool = True, alert_wait_s: float = ALERT_WAIT_S,
    ):
        self.agent_dir = agent_dir
        self.code_dir = code_dir
        self.environ = dict(environ)
        self.api_factory = api_factory or self._instance_api
        self.clock = clock
        self.python = python
        self.tick_s = tick_s
        self._sync = sync or self._sync_artifacts
        self.viewer = viewer  # tmux session `training` (off in unit tests, which run on the host's tmux)
        self.supervisor: subprocess.Popen | None = None
        self.alert_wait_s = alert_wait_s
        self._alert: subprocess.Popen | None = None
        self._alert_started = 0.0
        self._next_attempt = 0.0
        self._stopping = False
        self.state = self._load_or_init()

    # -- setup -------------------------------------------------------------------------------------------

    def _instance_api(self):
        from vastkit.client import VastAPI
        from vastkit.settings import DEFAULT_URL, ApiSettings

        key = self.environ.get(contract.CONTAINER_KEY_ENV, "")
        return VastAPI(ApiSettings(url=self.environ.get("VAST_URL") or DEFAULT_URL, api_key=key))

    def _instance_id(self) -> int | None:
        raw = self.environ.get(contract.CONTAINER_ID_ENV) or self.environ.get("VAST_CONTAINERLABEL", "").removeprefix("C.")
        return int(raw) if raw and raw.isdigit() else None

    def _load_or_init(self) -> AgentState:
        state = load_state(self.agent_dir)
        if state is None:
            lease = float(self.environ.get(contract.LEASE_ENV) or contract.DEFAULT_LEASE_S)
            state = AgentState(created_at=self.clock(), lease_deadline=self.clock() + lease)
            state.note(f"no stage 0 state: lease of {lease:.0f}s from now")
        state.instance_id = state.instance_id or self._instance_id()
        return state

    def learn_from_api(self) -> None:
        """The API's start_date is the instance's creation: budgets count from it (earliest known wins)."""
        if self.state.instance_id is None:
            return
        try:
            row = self.api_factory().get_instance(self.state.instance_id)
        except Exception as exc:
            log.warning("could not read this instance from the API (budgets count from stage 0's start): %s", exc)
            return
        if row is None:
            return
        if row.start_date and row.start_date < self.state.created_at:
            if self.state.lease_deadline:
                self.state.lease_deadline -= self.state.created_at - row.start_date
            self.state.created_at = float(row.start_date)
        self.state.dph = row.dph_total or self.state.dph

    # -- the loop ----------------------------------------------------------------------------------------

    def serve(self) -> int:
        (self.agent_dir / PID_NAME).write_text(f"{os.getpid()}\n")
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log.info("agent started (pid %d): instance %s created %.0fs ago", os.getpid(), self.state.instance_id,
                 self.clock() - self.state.created_at)
        self.learn_from_api()
        self._save()
        if self.state.run and not self.state.ending:
            self._ensure_viewer()
        while not self._stopping:
            self.step()
            time.sleep(self.tick_s)
        return self._shutdown_for_container_stop()

    def step(self) -> None:
        """One tick; every branch is safe to repeat (the state is saved after each change)."""
        try:
            for rid, payload in inbox.pending(self.agent_dir):
                inbox.answer(self.agent_dir, rid, self.handle(payload.get("op", ""), payload.get("args") or {}))
            self._tick()
        except Exception:  # the agent must outlive any single failure: log it, carry on next tick
            log.exception("agent step failed")

    def _tick(self) -> None:
        now = self.clock()
        state = self.state
        if state.ending and not state.ending.done:
            self._carry_on_ending(now)
            return
        run = state.run
        if run is None:
            if state.lease_deadline and now >= state.lease_deadline:
                self._begin_ending(Decision(contract.DESTROYED, "lease expired: no run was handed over within "
                                            f"{state.lease_deadline - state.created_at:.0f}s of creation "
                                            "(the controller never came back)"))
            return
        if run.outcome is None:
            self._supervise(run, now)
        elif state.ending and state.ending.action == contract.KEPT and now >= self._ceiling(run):
            self._begin_ending(Decision(contract.STOPPED, "budget reached after the run (auto_shutdown=false): "
                                        "STOPPED, disk kept, GPU billing ended"))

    # -- requests ----------------------------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "status":
            return {"ok": True, **self.status()}
        if op == "renew":
            if self.state.run is not None:
                return {"ok": False, "error": "the run was handed over: its budget, not a lease, applies now"}
            self.state.lease_deadline = self.clock() + float(args.get("seconds") or contract.DEFAULT_LEASE_S)
            self.state.note(f"lease renewed to {self.state.lease_deadline:.0f}")
            self._save()
            return {"ok": True, **self.status()}
        if op == "start-run":
            return self._start_run(Path(str(args.get("policy") or self.code_dir / contract.POLICY_FILE)),
                                   restart=bool(args.get("restart")))
        if op == "stop-run":
            return self._stop_run(str(args.get("reason") or "a stop request"))
        return {"ok": False, "error": f"unknown request {op!r}; allowed: {', '.join(inbox.OPS)}"}

    def status(self) -> dict[str, Any]:
        now = self.clock()
        run = self.state.run
        return {
            "pid": os.getpid(), "instance_id": self.state.instance_id, "created_at": self.state.created_at,
            "age_s": round(now - self.state.created_at, 1),
            "lease_left_s": None if self.state.lease_deadline is None else round(self.state.lease_deadline - now, 1),
            "run": None if run is None else run.name, "outcome": None if run is None else run.outcome,
            "supervisor_alive": self.supervisor is not None and self.supervisor.poll() is None,
            "ending": None if self.state.ending is None else self.state.ending.action,
            "ending_done": bool(self.state.ending and self.state.ending.done),
        }

    def _start_run(self, policy_path: Path, *, restart: bool) -> dict[str, Any]:
        try:
            policy = load_policy(policy_path)
        except PolicyError as exc:
            return {"ok": False, "error": str(exc)}
        run = self.state.run
        if self.state.ending and self.state.ending.action != contract.KEPT:
            return {"ok": False, "error": f"the instance is being {self.state.ending.action}: {self.state.ending.reason}"}
        if run is not None and run.name != policy.run_name and run.outcome is None:
            return {"ok": False, "error": f"run {run.name} is still running here; one run per instance"}
        if run is not None and run.name == policy.run_name:
            if run.outcome is None:
                return {"ok": True, "started": False, "why": "already running", **self.status()}
            if run.outcome == contract.SUCCEEDED and not restart:
                return {"ok": True, "started": False, "why": "succeeded earlier (-e restart=true runs it again)",
                        **self.status()}
        record = RunRecord(
            name=policy.run_name, policy_path=str(policy_path), handed_over_at=self.clock(),
            auto_shutdown=policy.auto_shutdown, max_runtime_hours=policy.max_runtime_hours, max_cost=policy.max_cost,
            dph=policy.dph or self.state.dph, ceiling_grace_s=policy.ceiling_grace_s,
            destroy_fallback_s=policy.destroy_fallback_s, restart_limit=policy.restart_limit,
            starts=run.starts if run is not None and run.name == policy.run_name else 0)
        self.state.run, self.state.ending, self.state.lease_deadline = record, None, None
        self.state.note(f"run {record.name} handed over; the lease ends, its budget counts from creation")
        self._save()
        # The train role waits for this run's PIPELINE STARTED: an earlier run's heartbeat must not answer it.
        (self.code_dir / hb.HEARTBEAT_NAME).unlink(missing_ok=True)
        self._spawn_supervisor(record)
        self._ensure_viewer()
        return {"ok": True, "started": True, **self.status()}

    def _stop_run(self, reason: str) -> dict[str, Any]:
        run = self.state.run
        if run is None or run.outcome is not None:
            return {"ok": False, "error": "no run is running"}
        run.user_stop = reason
        self.state.note(f"stop requested: {reason}")
        self._save()
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGINT)
        return {"ok": True, "stopping": True}

    # -- the supervisor ----------------------------------------------------------------------------------

    def _ceiling(self, run: RunRecord) -> float:
        """When the run's budget is spent: the earlier of max_runtime_hours and max_cost, from creation."""
        at = self.state.created_at + run.max_runtime_hours * 3600.0
        dph = run.dph or self.state.dph
        if run.max_cost is not None and dph:
            at = min(at, self.state.created_at + run.max_cost / dph * 3600.0)
        return at

    def _spawn_supervisor(self, run: RunRecord) -> None:
        run.starts += 1
        env = dict(self.environ)
        env.update({CREATED_AT_ENV: repr(self.state.created_at), STARTS_ENV: str(run.starts)})
        argv = [self.python, "-m", "instance_agent", "--code-dir", str(self.code_dir), "supervise",
                "--policy", run.policy_path]
        out = open(self.agent_dir / "supervisor.out", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.supervisor = subprocess.Popen(argv, cwd=self.code_dir, env=env, stdin=subprocess.DEVNULL,
                                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        log.info("supervisor started (start %d, pid %d)", run.starts, self.supervisor.pid)
        self._save()

    def _supervise(self, run: RunRecord, now: float) -> None:
        if self.supervisor is None:  # after a container or agent restart: the run resumes
            log.info("run %s is unfinished: starting its supervisor (it resumes from the checkpoints)", run.name)
            self._spawn_supervisor(run)
            return
        code = self.supervisor.poll()
        if code is None:
            if now >= self._ceiling(run) + run.ceiling_grace_s:
                log.error("the supervisor outlived the budget by %.0fs: killing it", now - self._ceiling(run))
                self._kill_supervisor()
                self._finish_without_supervisor(run, "budget ceiling: the supervisor did not stop in time",
                                                contract.BUDGET_EXCEEDED)
            return
        self.supervisor = None
        beat = hb.read_heartbeat(self.code_dir / hb.HEARTBEAT_NAME)
        if beat and beat.run_name == run.name and beat.is_final and beat.phase == contract.PHASE_ENDING:
            outcome: tuple[str, bool | None] | None = (beat.state, beat.synced)
            run.error = beat.error
        else:  # no final heartbeat (it could not be written: a full disk): the exit code says how it ended
            outcome = contract.parse_supervisor_exit(code)
            if outcome is not None:
                run.error = (f"the supervisor's heartbeat could not be written{_disk_note(self.code_dir)}; it "
                             f"exited {code} ({outcome[0]})")
        if outcome is not None:
            run.outcome, run.synced = outcome
            self._save()
            self._begin_ending(decide(run.outcome, synced=run.synced, auto_shutdown=run.auto_shutdown,
                                      user_stop=run.user_stop))
            return
        run.crashes += 1
        self.state.note(f"supervisor exited with {code} and no final heartbeat (crash {run.crashes})")
        log.error("the supervisor exited with %s without finishing (crash %d of %d allowed)", code, run.crashes,
                  run.restart_limit)
        if run.crashes > run.restart_limit:
            self._finish_without_supervisor(run, f"the supervisor crashed {run.crashes} times", contract.FAILED)
        else:
            self._save()
            self._spawn_supervisor(run)

    def _kill_supervisor(self) -> None:
        if self.supervisor is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.supervisor.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.supervisor.wait(timeout=30)
            self.supervisor = None

    def _finish_without_supervisor(self, run: RunRecord, why: str, outcome: str) -> None:
        """Sync ourselves (bounded), then end as the decision says."""
        synced = True
        try:
            self._sync(load_policy(run.policy_path))
        except Exception as exc:
            synced = False
            log.error("the agent's own sync failed: %s", exc)
        run.outcome, run.synced, run.error = outcome, synced, why
        self._save()
        self._begin_ending(decide(outcome, synced=synced, auto_shutdown=run.auto_shutdown, user_stop=run.user_stop))

    def _sync_artifacts(self, policy: SupervisorPolicy) -> None:
        from instance_agent.artifacts import sync_artifacts
        from instance_agent.rclone import Bucket

        sync_artifacts(Bucket.from_env(self.environ), policy.code_path, policy.artifact_prefix(),
                       timeout=min(policy.sync_timeout_s, 600.0))

    # -- ending the billing ------------------------------------------------------------------------------

    def _begin_ending(self, decision: Decision) -> None:
        self.state.ending = Ending(action=decision.action, reason=decision.reason, started_at=self.clock())
        self.state.note(f"ending: {decision.action}: {decision.reason}")
        log.warning("ending the billing: %s (%s)", decision.action, decision.reason)
        self._next_attempt = 0.0
        self._save()
        self._report()
        self._send_alert(decision)
        if decision.action == contract.KEPT:
            self.state.ending.done = True
            self._save()
            self._report()

    def _carry_on_ending(self, now: float) -> None:
        ending = self.state.ending
        if now < self._next_attempt:
            return
        if self._alert is not None and self._alert.poll() is None and now - self._alert_started < self.alert_wait_s:
            return  # the alert is on its way: the destroy would end it
        if self.state.instance_id is None:
            ending.last_error = "no CONTAINER_ID in the environment: cannot end this instance's billing"
            log.error("%s", ending.last_error)
            self._next_attempt = now + 60
            return
        api = EndingApi(self.api_factory, self.state.instance_id)
        ending.attempts += 1
        try:
            if ending.action == contract.DESTROYED:
                if not ending.stop_requested and now - ending.started_at >= self._fallback_s():
                    ending.stop_requested = True
                    log.error("destroy has failed for %.0fs: asking for a stop as well (GPU billing ends, "
                              "disk kept); destroy keeps being retried", now - ending.started_at)
                    with contextlib.suppress(Exception):
                        api.stop_confirmed()
                done = api.destroy_confirmed()
            else:
                done = api.stop_confirmed()
            ending.last_error = None if done else "the API still lists the instance"
        except Exception as exc:
            done = False
            ending.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if done:
            ending.done = True
            log.info("billing ended: %s after %d attempt(s)", ending.action, ending.attempts)
        else:
            self._next_attempt = now + backoff(ending.attempts)
            log.error("ending attempt %d (%s) failed: %s; next in %.0fs", ending.attempts, ending.action,
                      ending.last_error, self._next_attempt - now)
        self._save()
        self._report(upload=not done)

    def _send_alert(self, decision: Decision) -> None:
        """A W&B alert saying how the billing ends (`python -m training alert`, which sends only to an online
        run). A child process, so that W&B's import and network never hold up or break the agent."""
        run = self.state.run
        if run is None or self.alert_wait_s <= 0:
            return
        try:
            policy = load_policy(run.policy_path)
            from instance_agent.supervisor import pipeline_env

            level = "INFO" if run.outcome == contract.SUCCEEDED and decision.action != contract.STOPPED else "WARN"
            title = f"{run.name}: instance {decision.action}"
            text = f"{decision.reason}. Run state: {run.outcome or 'not started'}" + (
                f" ({run.error})" if run.error else "") + self._cost_words(run)
            self._alert = subprocess.Popen(
                [policy.python, "-m", "training", "alert", "--config", policy.train_config, "--run-name", run.name,
                 "--title", title, "--text", text, "--level", level]
                + ([] if run.outcome == contract.SUCCEEDED else ["--failed"]),
                cwd=self.code_dir, env=pipeline_env(policy, self.environ), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            self._alert_started = self.clock()
        except Exception as exc:  # an alert that cannot be sent must not touch the ending
            log.warning("no W&B alert for the ending: %s", exc)

    def _cost_words(self, run: RunRecord) -> str:
        cost = self._cost_so_far(run)
        return "" if cost is None else f". Cost so far ${cost:.2f} at ${run.dph or self.state.dph:g}/h"

    def _cost_so_far(self, run: RunRecord) -> float | None:
        """The instance's cost since its creation at the run's $/h (the API's when the run named none)."""
        dph = run.dph or self.state.dph
        return round(dph * (self.clock() - self.state.created_at) / 3600.0, 6) if dph else None

    def _fallback_s(self) -> float:
        return self.state.run.destroy_fallback_s if self.state.run else 600.0

    def _report(self, upload: bool = True) -> None:
        """The ending, in the heartbeat (and the bucket): status.yml shows it even once we are gone."""
        run, ending = self.state.run, self.state.ending
        if run is None or ending is None:
            return
        path = self.code_dir / hb.HEARTBEAT_NAME
        beat = hb.read_heartbeat(path)
        if beat is None or beat.run_name != run.name:
            if not run.outcome:
                return
            # The run ended before its supervisor wrote a heartbeat (a budget spent on provisioning): the
            # bucket still gets one, from the agent's record.
            beat = hb.Heartbeat(pid=os.getpid(), run_name=run.name, started_at=hb.utc_now(), updated_at=hb.utc_now(),
                                auto_shutdown=run.auto_shutdown, max_runtime_hours=run.max_runtime_hours,
                                max_cost=run.max_cost, dph=run.dph or self.state.dph,
                                created_at=self.state.created_at)
        if run.outcome and not beat.is_final:  # the supervisor could not write its end (a full disk)
            beat.state, beat.synced, beat.error = run.outcome, run.synced, run.error
        beat.ending, beat.ending_reason = ending.action, ending.reason
        beat.ending_attempts, beat.ending_error = ending.attempts, ending.last_error
        beat.phase = contract.PHASE_DONE if ending.done else contract.PHASE_ENDING
        if (cost := self._cost_so_far(run)) is not None:
            beat.cost_so_far = cost
        key = f"{contract.run_prefix(run.name)}/{contract.HEARTBEAT_FILE}"
        try:
            hb.write_heartbeat(path, beat)
        except OSError as exc:  # a full disk: the bucket still gets it, from memory
            log.error("could not write the heartbeat: %s", exc)
            if upload and run.synced:
                self._upload_bytes(json.dumps(beat.to_dict(), indent=2).encode(), key)
            return
        if upload and run.synced:
            self._upload(path, key)
            self._upload(self.agent_dir / "agent.log", f"{contract.run_prefix(run.name)}/{contract.AGENT_LOG}")

    def _upload_bytes(self, data: bytes, key: str) -> None:
        from instance_agent.rclone import Bucket

        try:
            Bucket.from_env(self.environ).put_bytes(data, key, timeout=60)
        except Exception as exc:
            log.warning("could not upload %s: %s", key, exc)

    def _upload(self, path: Path, key: str) -> None:
        from instance_agent.rclone import Bucket

        try:
            Bucket.from_env(self.environ).copy_file(path, key, timeout=60)
        except Exception as exc:
            log.warning("could not upload %s: %s", path.name, exc)

    # -- tmux, signals, persistence -----------------------------------------------------------------------

    def _ensure_viewer(self) -> None:
        """tmux session `training` shows the run (`tmux attach -t training`); its Ctrl-C stops the run."""
        tmux = shutil.which("tmux")
        if not self.viewer:
            return
        if tmux is None:
            log.warning("tmux is not installed: no session %s", contract.TMUX_SESSION)
            return
        env = {k: v for k, v in self.environ.items() if k in VIEWER_ENV}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("HOME", "/root")
        if subprocess.run([tmux, "has-session", "-t", f"={contract.TMUX_SESSION}"], env=env,
                          capture_output=True, check=False).returncode == 0:
            return
        subprocess.run([tmux, "new-session", "-d", "-s", contract.TMUX_SESSION, "-c", str(self.code_dir),
                        self.python, "-m", "instance_agent", "--code-dir", str(self.code_dir), "attach"],
                       env=env, capture_output=True, check=False)

    def _on_sigterm(self, _signum, _frame) -> None:
        self._stopping = True

    def _shutdown_for_container_stop(self) -> int:
        """SIGTERM (a container stop): the supervisor saves and syncs; the run resumes at the next start."""
        log.warning("SIGTERM: the container is stopping; the supervisor saves and syncs, nothing is destroyed")
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.supervisor.wait(timeout=120)
        self._save()
        return 0

    def _save(self) -> None:
        try:
            save_state(self.agent_dir, self.state)
        except OSError as exc:  # a full disk: the agent carries on from memory
            log.error("could not save the agent state: %s", exc)


def _disk_note(path: Path) -> str:
    """Why a write may have failed, for the record: the disk's free space when it is (nearly) full, else ""."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return ""
    return f" (No space left on device: {free / 2**20:.1f} MiB free)" if free < LOW_DISK_BYTES else ""
