"""The instance agent's decisions, tick by tick, with a fake clock and a fake instance API (the real API, real
SSH and real restarts are in tests/e2e/test_chaos.py). The supervisor it starts is the real one, running a
scripted stand-in pipeline and syncing to moto's S3 server with real rclone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import run_contract as contract
from instance_agent import heartbeat as hb
from instance_agent import inbox
from instance_agent.agent import Agent
from instance_agent.agentstate import AgentState, load_state, save_state
from instance_agent.ending import decide
from tools.s3server import running_s3_server
from vastkit.errors import VastAPIError

FAKE_PYTHON = textwrap.dedent("""\
    #!{python}
    # Stands in for the interpreter that would run `-m training run ...`: behaves as $FAKE_MODE says.
    import json, os, signal, sys, time
    from pathlib import Path
    run = Path(os.environ["TRAIN_RUN_DIR"])
    if sys.argv[1:4] == ["-m", "training", "alert"]:  # the agent's W&B alert: record it, take a while
        started = time.time()
        time.sleep(float(os.environ.get("FAKE_ALERT_S", "0")))
        (run / "alert.json").write_text(json.dumps({{"argv": sys.argv[4:], "env": sorted(os.environ),
                                                     "started": started, "finished": time.time()}}))
        sys.exit(0)
    (run / "logs").mkdir(parents=True, exist_ok=True)
    print("PIPELINE STARTED run=%s stages=operator wandb=disabled" % os.environ["TRAIN_RUN_NAME"], flush=True)
    (run / "logs" / "operator.log").write_text("step 1\\n")
    mode = os.environ.get("FAKE_MODE", "ok")
    if mode == "hang":
        time.sleep(600)
    if mode == "hang_ignoring_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    print("PIPELINE FINISHED ok", flush=True)
""")


class FakeApi:
    """The instance as the API sees it; `failures` makes the next N destroy/stop calls answer 503."""

    def __init__(self, *, start_date: float, failures: int = 0):
        self.start_date = start_date
        self.failures = failures
        self.gone = self.stopped = False
        self.calls: list[str] = []

    def get_instance(self, _id):
        self.calls.append("get")
        if self.gone:
            return None
        status = "stopped" if self.stopped else "running"
        return SimpleNamespace(start_date=self.start_date, dph_total=1.0, intended_status=status, actual_status=status)

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if self.failures > 0:
            self.failures -= 1
            raise VastAPIError(503, None, "Service Unavailable", method="DELETE", path="/api/v0/instances/7/")

    def destroy_instance(self, _id):
        self._maybe_fail("destroy")
        self.gone = True
        self.destroyed_at = time.time()
        return True

    def stop_instance(self, _id):
        self._maybe_fail("stop")
        self.stopped = True


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def s3():
    with running_s3_server(bucket="agent-tests") as server:
        yield server


def make_agent(tmp_path: Path, s3, *, api: FakeApi, clock=time.time, lease_s: float = 60, alert_wait_s: float = 0,
               **env) -> Agent:
    agent_dir, code_dir = tmp_path / "agent", tmp_path / "code"
    code_dir.mkdir(exist_ok=True)
    environ = {**os.environ, **s3.b2_env(), "CONTAINER_ID": "7", "CONTAINER_API_KEY": "k",
               contract.LEASE_ENV: str(lease_s), **env}
    return Agent(agent_dir=agent_dir, code_dir=code_dir, environ=environ, api_factory=lambda: api, clock=clock,
                 python=sys.executable, tick_s=0.05, viewer=False, alert_wait_s=alert_wait_s)


def write_policy(tmp_path: Path, mode: str, **over) -> Path:
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    path = tmp_path / "code" / contract.POLICY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    policy = {"run_name": f"agent-{mode}", "train_config": "configs/tiny.yaml", "code_dir": str(tmp_path / "code"),
              "python": str(fake), "heartbeat_every_s": 0.2, "sync_every_s": 0.0, "stop_grace_s": 2.0, "dph": 1.0,
              "pipeline_env": {"FAKE_MODE": mode}, **over}
    path.write_text(json.dumps(policy))
    return path


def run_until(agent: Agent, done, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"agent did not get there: {agent.status()} {agent.state.history}"
        agent.step()
        time.sleep(0.05)


# ----- decisions -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("outcome", "synced", "auto", "user", "action"), [
    ("succeeded", True, True, None, "destroyed"),
    ("failed", True, True, None, "destroyed"),
    ("succeeded", True, False, None, "kept"),
    ("failed", False, True, None, "stopped"),  # data first: the disk keeps the only copy
    ("succeeded", None, True, None, "stopped"),
    ("budget_exceeded", True, False, None, "stopped"),  # a ceiling ends GPU billing whatever auto_shutdown says
    ("budget_exceeded", True, True, None, "destroyed"),
    ("interrupted", True, True, "Ctrl-C in tmux session training", "destroyed"),
    ("interrupted", True, False, "Ctrl-C in tmux session training", "stopped"),
])
def test_decide(outcome, synced, auto, user, action):
    assert decide(outcome, synced=synced, auto_shutdown=auto, user_stop=user).action == action


# ----- the lease -----------------------------------------------------------------------------------------

def test_the_lease_destroys_an_instance_nobody_handed_a_run(tmp_path, s3):
    clock = Clock(1000.0)
    api = FakeApi(start_date=990.0)
    agent = make_agent(tmp_path, s3, api=api, clock=clock, lease_s=60)
    agent.learn_from_api()
    assert agent.state.created_at == 990.0 and agent.state.lease_deadline == 1050.0  # counted from creation
    clock.now = 1049.0
    agent.step()
    assert not api.gone
    clock.now = 1050.0
    agent.step()  # lease over: the ending begins ...
    agent.step()  # ... and is carried out, then read back
    assert api.gone and api.calls[-2:] == ["destroy", "get"]
    assert "lease expired" in agent.state.ending.reason and agent.state.ending.done


def test_renew_moves_the_lease_and_survives_a_restart(tmp_path, s3):
    clock = Clock(1000.0)
    api = FakeApi(start_date=1000.0)
    agent = make_agent(tmp_path, s3, api=api, clock=clock, lease_s=60)
    agent._save()
    assert agent.handle("renew", {"seconds": 600})["lease_left_s"] == 600
    again = make_agent(tmp_path, s3, api=api, clock=clock, lease_s=60)  # a container restart: same state file
    assert again.state.lease_deadline == 1600.0


def test_destroy_is_retried_with_backoff_then_falls_back_to_a_stop(tmp_path, s3):
    clock = Clock(1000.0)
    api = FakeApi(start_date=1000.0, failures=10_000)
    agent = make_agent(tmp_path, s3, api=api, clock=clock, lease_s=1)
    clock.now = 1001.0
    agent.step()
    for _ in range(30):  # ten minutes of 503s, far more than any fixed timeout of old
        clock.now += 60.0
        agent.step()
    ending = agent.state.ending
    assert not ending.done and ending.attempts >= 10 and "503" in ending.last_error
    assert ending.stop_requested and "stop" in api.calls  # GPU billing ends even while destroy keeps failing
    api.failures = 0  # the API recovers
    clock.now += 120.0
    agent.step()
    assert ending.done and api.gone


# ----- a run -----------------------------------------------------------------------------------------------

def test_a_run_handed_over_ends_destroyed_after_its_sync(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    reply = agent.handle("start-run", {"policy": str(write_policy(tmp_path, "ok"))})
    assert reply["ok"] and reply["started"] and agent.state.lease_deadline is None
    assert agent.handle("start-run", {"policy": str(write_policy(tmp_path, "ok"))})["started"] is False
    run_until(agent, lambda: api.gone)
    beat = hb.read_heartbeat(tmp_path / "code" / contract.HEARTBEAT_FILE)
    assert (beat.state, beat.synced) == ("succeeded", True)
    assert (beat.ending, beat.phase) == ("destroyed", "done")
    assert json.loads(s3.read("runs/agent-ok/heartbeat.json"))["state"] == "succeeded"


def test_the_ending_waits_a_bounded_time_for_its_w_and_b_alert(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api, alert_wait_s=20, WANDB_API_KEY="wandb-sentinel")
    policy = write_policy(tmp_path, "ok", pipeline_env={"FAKE_MODE": "ok", "FAKE_ALERT_S": "1.5"})
    assert agent.handle("start-run", {"policy": str(policy)})["ok"]
    run_until(agent, lambda: api.gone)
    alert = json.loads((tmp_path / "code" / "alert.json").read_text())
    args = dict(zip(alert["argv"][::2], alert["argv"][1::2], strict=True))
    assert args["--run-name"] == "agent-ok" and args["--title"] == "agent-ok: instance destroyed"
    assert args["--level"] == "INFO" and "synced, destroyed" in args["--text"] and "Cost so far $" in args["--text"]
    assert "WANDB_API_KEY" in alert["env"] and "CONTAINER_API_KEY" not in alert["env"]  # W&B's key, not Vast's
    assert "wandb-sentinel" not in json.dumps(alert["argv"])  # nothing secret on a command line
    assert api.destroyed_at >= alert["finished"], "the destroy would have cut the alert off"


def test_an_alert_that_hangs_holds_the_ending_only_as_long_as_allowed(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api, alert_wait_s=2)
    policy = write_policy(tmp_path, "ok", pipeline_env={"FAKE_MODE": "ok", "FAKE_ALERT_S": "60"})
    assert agent.handle("start-run", {"policy": str(policy)})["ok"]
    run_until(agent, lambda: api.gone, timeout=30)
    assert agent._alert.poll() is None, "the alert still hangs"
    assert 2 <= api.destroyed_at - agent._alert_started < 10  # held for the allowance, then destroyed anyway
    agent._alert.kill()


def test_a_killed_supervisor_is_restarted_and_the_run_finishes(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    agent.handle("start-run", {"policy": str(write_policy(tmp_path, "hang", max_runtime_hours=0.002))})  # 7 s
    run_until(agent, lambda: (tmp_path / "code" / contract.HEARTBEAT_FILE).exists())
    os.killpg(agent.supervisor.pid, signal.SIGKILL)  # kill -9 of the supervisor (and its session)
    run_until(agent, lambda: api.gone, timeout=90)
    run = agent.state.run
    assert run.crashes == 1 and run.starts == 2 and run.outcome == "budget_exceeded"


def test_stop_run_ends_the_run_as_a_person_means_it(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    agent.handle("start-run", {"policy": str(write_policy(tmp_path, "hang", auto_shutdown=False))})
    run_until(agent, lambda: (hb.read_heartbeat(tmp_path / "code" / contract.HEARTBEAT_FILE) or
                              SimpleNamespace(pipeline_started=False)).pipeline_started)
    assert agent.handle("stop-run", {"reason": "Ctrl-C in tmux session training"})["ok"]
    run_until(agent, lambda: api.stopped)
    assert not api.gone  # auto_shutdown=false: stopped (disk kept), never left billing
    assert "Ctrl-C" in agent.state.ending.reason


def test_a_kept_instance_is_stopped_at_its_ceiling(tmp_path, s3):
    clock = Clock(time.time())
    api = FakeApi(start_date=clock.now)
    agent = make_agent(tmp_path, s3, api=api, clock=clock)
    agent.handle("start-run", {"policy": str(write_policy(tmp_path, "ok", auto_shutdown=False))})
    run_until(agent, lambda: agent.state.ending is not None)
    assert agent.state.ending.action == "kept" and not api.stopped
    clock.now += 24 * 3600 + 1
    agent.step()
    agent.step()
    assert api.stopped and agent.state.ending.action == "stopped"


def test_past_the_ceiling_the_agent_kills_what_still_runs(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    policy = write_policy(tmp_path, "hang_ignoring_term", max_runtime_hours=0.0005, stop_grace_s=600.0,
                          ceiling_grace_s=2.0)
    agent.handle("start-run", {"policy": str(policy)})
    run_until(agent, lambda: api.gone, timeout=60)
    assert agent.state.run.outcome == "budget_exceeded" and agent.state.run.synced


def test_a_run_handed_over_past_its_ceiling_still_leaves_a_heartbeat_in_the_bucket(tmp_path, s3):
    """Provisioning spent the whole budget (it counts from creation): the supervisor never writes a heartbeat,
    yet what happened is readable afterwards, from the bucket."""
    api = FakeApi(start_date=time.time() - 3600)
    agent = make_agent(tmp_path, s3, api=api)
    policy = write_policy(tmp_path, "hang_ignoring_term", run_name="agent-late", max_runtime_hours=0.1,
                          auto_shutdown=False, ceiling_grace_s=0.5, stop_grace_s=600.0)
    agent.learn_from_api()  # created an hour ago: the budget of 6 minutes is spent
    answer = agent.handle("start-run", {"policy": str(policy)})
    assert answer["ok"], answer
    os.killpg(agent.supervisor.pid, signal.SIGKILL)  # it never got as far as a heartbeat
    agent.supervisor.wait()
    (tmp_path / "code" / contract.HEARTBEAT_FILE).unlink(missing_ok=True)
    run_until(agent, lambda: api.stopped and agent.state.ending.done)
    beat = json.loads(s3.read(f"runs/agent-late/{contract.HEARTBEAT_FILE}"))
    assert beat["run_name"] == "agent-late" and beat["ending"] == "stopped" and beat["ending_reason"]
    assert beat["state"] == "budget_exceeded" and beat["created_at"] < time.time() - 3000


def test_an_unfinished_run_resumes_after_a_container_restart(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    agent.handle("start-run", {"policy": str(write_policy(tmp_path, "ok"))})
    os.killpg(agent.supervisor.pid, signal.SIGKILL)  # the container went away with everything in it
    agent.supervisor.wait()
    again = make_agent(tmp_path, s3, api=api)  # onstart starts a new agent over the same state
    assert again.state.run.name == "agent-ok" and again.state.run.outcome is None
    run_until(again, lambda: api.gone)
    assert again.state.run.outcome == "succeeded" and again.state.run.starts == 2


def test_requests_through_the_inbox(tmp_path, s3):
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    import threading

    stop = threading.Event()

    def loop():
        while not stop.is_set():
            agent.step()
            time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        assert inbox.request(agent.agent_dir, "status", timeout=10)["run"] is None
        assert inbox.request(agent.agent_dir, "renew", {"seconds": 5}, timeout=10)["ok"]
        bad = inbox.request(agent.agent_dir, "start-run", {"policy": str(tmp_path / "nope.json")}, timeout=10)
        assert not bad["ok"] and "policy file not found" in bad["error"]
    finally:
        stop.set()
        thread.join()
    with pytest.raises(ValueError, match="unknown agent request"):
        inbox.request(agent.agent_dir, "explode")


def test_state_file_is_root_only(tmp_path):
    save_state(tmp_path, AgentState(created_at=1.0))
    assert (tmp_path / "state.json").stat().st_mode & 0o077 == 0
    assert load_state(tmp_path).created_at == 1.0


def test_without_a_final_heartbeat_the_exit_code_says_how_the_run_ended(tmp_path, s3):
    """A full disk: the supervisor could not write its last heartbeat; its exit code carries the outcome."""
    assert contract.parse_supervisor_exit(contract.supervisor_exit_code("failed", True)) == ("failed", True)
    assert contract.parse_supervisor_exit(contract.supervisor_exit_code("succeeded", False)) == ("succeeded", False)
    assert contract.parse_supervisor_exit(-9) is None and contract.parse_supervisor_exit(1) is None
    api = FakeApi(start_date=time.time())
    agent = make_agent(tmp_path, s3, api=api)
    agent.handle("start-run", {"policy": str(write_policy(tmp_path, "ok"))})
    agent.supervisor.wait(timeout=60)
    beat = hb.read_heartbeat(tmp_path / "code" / contract.HEARTBEAT_FILE)
    beat.state, beat.phase = "running", "pipeline"  # as if the last writes had failed
    hb.write_heartbeat(tmp_path / "code" / contract.HEARTBEAT_FILE, beat)
    run_until(agent, lambda: api.gone)
    assert agent.state.run.outcome == "succeeded" and agent.state.run.crashes == 0
    assert json.loads(s3.read("runs/agent-ok/heartbeat.json"))["state"] == "succeeded"


def test_a_record_without_heartbeat_says_when_the_disk_is_full(tmp_path, monkeypatch):
    from collections import namedtuple

    from instance_agent import agent as agent_module

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(agent_module.shutil, "disk_usage", lambda _p: usage(10 * 2**30, 10 * 2**30, 2**19))
    assert agent_module._disk_note(tmp_path) == " (No space left on device: 0.5 MiB free)"
    monkeypatch.setattr(agent_module.shutil, "disk_usage", lambda _p: usage(10 * 2**30, 2**30, 9 * 2**30))
    assert agent_module._disk_note(tmp_path) == ""  # room left: the write failed for another reason
