"""status.yml, logs.yml and teardown.yml on a launched run, over real SSH (and the API when SSH is refused);
what protects runs from being destroyed by mistake (selectors, the reaper) and what cleans up after a launch
that was interrupted, killed, raced or torn down while it waited (the failover's decisions also have fast unit
tests: tests/vastkit/test_failover_units.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ctl_support import REPO, VENV_BIN, api_requests_since, creates_since, instances, last_seq

from run_contract import OWNER_ENV, OWNER_VALUE
from vast_emulator.testing import connect_ssh, make_ssh_keypair, ssh_run
from vastkit.client import VastAPI

CODE_DIR = "/workspace/universal_simulator"
STATUS = {"run_name": "ctl-ops", "stage": "operator", "step": 120, "total_steps": 400, "loss": 0.0123,
          "samples_per_s": 850.0, "eta_s": 33, "state": "running", "error": None,
          "wandb_url": "https://wandb.ai/team/universal-simulator/runs/abc123", "updated_at": "2026-11-28T14:05:00+00:00"}
HEARTBEAT = {"pid": 4242, "started_at": "2026-11-28T14:00:00+00:00", "updated_at": "2026-11-28T14:05:00+00:00",
             "state": "training", "stage": "operator", "step": 120, "elapsed_s": 300.0, "dph": 0.5,
             "cost_so_far": 0.0417, "max_runtime_hours": 24, "max_cost": None}


def _rent(emulator, label: str | None, **body) -> dict:
    """An instance straight through the API (launch.yml itself is tested in test_launch.py)."""
    return emulator.wait_status(emulator.launch(label=label, onstart="echo onstart-of-$CONTAINER_ID", **body),
                                "running")


def _write_run_files(row: dict, key, *, with_policy: bool = False) -> None:
    client = connect_ssh(row, key)
    try:
        lines = "\\n".join(f"step {i} loss {1.0 / (i + 1):.4f}" for i in range(30))
        script = (f"mkdir -p {CODE_DIR}/logs {CODE_DIR}/.vastkit && cd {CODE_DIR} && "
                  f"printf '%s' '{json.dumps(STATUS)}' > status.json && "
                  f"printf '%s' '{json.dumps(HEARTBEAT)}' > heartbeat.json && "
                  f"printf '{lines}\\n' > logs/operator.log && echo 'cache done' > logs/cache.log && "
                  f"touch -d '1 hour ago' logs/cache.log")
        if with_policy:
            script += " && echo '{}' > .vastkit/supervisor.json"
        status, _, err = ssh_run(client, script)
        assert status == 0, err
    finally:
        client.close()


def test_status_and_logs_of_a_run(ansible, emulator, ssh_keypair, tmp_path):
    row = _rent(emulator, "ctl-ops")
    _write_run_files(row, ssh_keypair.private_key)

    status = ansible.playbook("playbooks/status.yml", "-e", "run=ctl-ops", "-e", "lines=3")
    assert status.rc == 0, status.out
    assert f"ctl-ops: instance {row['id']} running" in status.out
    assert "training: running, stage operator, step 120/400, loss 0.0123, eta 0:01" in status.out  # h:mm
    assert "W&B: https://wandb.ai/team/universal-simulator/runs/abc123" in status.out
    assert "cost so far ~$" in status.out  # the live cost (age x $/h); test_status_heartbeat.py checks it
    assert "step 29 loss 0.0333" in status.out and "step 26 loss" not in status.out  # the last 3 lines

    tail = ansible.playbook("playbooks/logs.yml", "-e", "run=ctl-ops", "-e", "lines=5")
    assert tail.rc == 0, tail.out
    assert f"== {CODE_DIR}/logs/operator.log" in tail.out and "step 25 loss" in tail.out
    assert "Vast logs endpoint" not in tail.out

    dest = tmp_path / "fetched"
    fetched = ansible.playbook("playbooks/logs.yml", "-e", "run=ctl-ops", "-e", "fetch=true", "-e", f"dest={dest}")
    assert fetched.rc == 0, fetched.out
    assert sorted(p.name for p in (dest / "ctl-ops").iterdir()) == ["cache.log", "operator.log"]
    assert (dest / "ctl-ops" / "operator.log").read_text().startswith("step 0 loss 1.0000")

    # SSH refused (a key the instance does not know; a fresh ControlPath dir so no master connection is
    # reused): the logs come from Vast's logs endpoint instead.
    other = make_ssh_keypair(tmp_path / "other_key")
    fallback = ansible.playbook("playbooks/logs.yml", "-e", "run=ctl-ops", "-e", f"ssh_key_file={other.private_key}",
                                env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp-other")})
    assert fallback.rc == 0, fallback.out
    assert f"== instance {row['id']} container log (Vast logs endpoint" in fallback.out
    assert f"onstart-of-{row['id']}" in fallback.out


def test_teardown_keeps_an_instance_whose_sync_failed_unless_forced(ansible, emulator, ssh_keypair):
    row = _rent(emulator, "ctl-down")
    _write_run_files(row, ssh_keypair.private_key, with_policy=True)  # a supervisor policy, no working supervisor

    kept = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-down")
    assert kept.rc != 0
    assert "SYNC FAILED" in kept.out and "instance KEPT" in kept.out
    assert [r["id"] for r in instances(emulator, "ctl-down")] == [row["id"]]

    stopped = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-down", "-e", "force=true",
                               "-e", "keep_disk=true")
    assert stopped.rc == 0, stopped.out
    assert "torn down anyway (force=true)" in stopped.out
    assert emulator.instance(row["id"])["actual_status"] == "stopped"  # keep_disk: stopped, not destroyed

    destroyed = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-down")  # stopped: nothing to sync
    assert destroyed.rc == 0, destroyed.out
    assert instances(emulator, "ctl-down") == [] and emulator.instance(row["id"]) is None

    nothing = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-down")
    assert nothing.rc == 0 and "Nothing to tear down." in nothing.out


# -- nothing destroyed by mistake -------------------------------------------------------------------------------

SELECTOR_MISTAKES = [
    ("playbooks/teardown.yml", ["-e", "run="], "-e run= is empty (an unset shell variable?)"),
    ("playbooks/teardown.yml", ["-e", "id="], "-e id= is no instance id"),
    ("playbooks/teardown.yml", ["-e", "all_runs=true", "-e", "label_prefix="],
     "-e label_prefix= is empty: it would match every instance of the account"),
    ("playbooks/teardown.yml", ["-e", "all_runs=ture"], "-e all_runs=ture is no boolean"),
    ("playbooks/teardown.yml", ["-e", "older_than=6h"], "Say what to tear down"),
    ("playbooks/teardown.yml", ["-e", "run=ctl-x", "-e", "id=5"], "Give one selector, not run and id"),
    ("playbooks/status.yml", ["-e", "run="], "-e run= is empty"),
    ("playbooks/logs.yml", ["-e", "id=abc"], "-e id=abc is no instance id"),
]


def test_empty_or_bad_selectors_fail_before_any_api_call(ansible, emulator):
    unlabelled = _rent(emulator, None)  # what `teardown -e run=` once destroyed
    try:
        for playbook, args, message in SELECTOR_MISTAKES:
            seq = last_seq(emulator)
            result = ansible.playbook(playbook, *args)
            assert result.rc != 0 and message in result.out, (args, result.out[-2500:])
            assert "Nothing was selected" in result.out
            assert api_requests_since(emulator, seq) == [], f"{args}: no API call before the selector is checked"
        assert emulator.instance(unlabelled["id"])["actual_status"] == "running"
    finally:
        emulator.destroy(unlabelled["id"])


BEAT_SCRIPT = """while :; do
  printf '{"updated_at": "%s"}' "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" > CODE/hb.tmp && mv CODE/hb.tmp CODE/heartbeat.json
  sleep 1
done
""".replace("CODE", CODE_DIR)


def _beat_forever(row: dict, key) -> None:
    """A stand-in supervisor on the instance: heartbeat.json rewritten every second."""
    client = connect_ssh(row, key)
    try:
        script = (f"mkdir -p {CODE_DIR} && cat > {CODE_DIR}/beat.sh <<'EOF'\n{BEAT_SCRIPT}EOF\n"
                  f"nohup setsid sh {CODE_DIR}/beat.sh >/dev/null 2>&1 < /dev/null &\n"
                  f"sleep 1.5; cat {CODE_DIR}/heartbeat.json")
        status, out, err = ssh_run(client, script)
        assert status == 0 and "updated_at" in out, (out, err)
    finally:
        client.close()


def test_reaper_takes_only_this_projects_dead_runs(ansible, emulator, ssh_keypair):
    owned = {"env": {OWNER_ENV: OWNER_VALUE}}
    alive = _rent(emulator, "ctl-reap-alive", **owned)
    stale = _rent(emulator, "ctl-reap-stale", **owned)
    silent = _rent(emulator, "ctl-reap-silent", **owned)
    foreign = _rent(emulator, "tiny-ctl-foreign")  # a config-name prefix, but not created by this project
    unlabelled = _rent(emulator, None)
    _beat_forever(alive, ssh_keypair.private_key)
    _write_run_files(stale, ssh_keypair.private_key)  # heartbeat.json updated_at 2026-11-28: long stale
    try:
        time.sleep(max(0.0, silent["start_date"] + 9 - time.time()))  # older than stale_after, no heartbeat
        reap = ["-e", "all_runs=true", "-e", "stale_after=8s"]
        seq = last_seq(emulator)
        dry = ansible.playbook("playbooks/teardown.yml", *reap, "--check")
        assert dry.rc == 0, dry.out
        said = " ".join(dry.out.split())  # the YAML callback wraps long lines
        listed = said.split("WOULD TEAR DOWN (check mode: nothing is destroyed):", 1)[1].split("TASK", 1)[0]
        assert f"ctl-reap-stale | {stale['id']} | heartbeat stale" in listed
        assert f"ctl-reap-silent | {silent['id']} | no supervisor heartbeat" in listed
        assert "ctl-reap-alive" not in listed and "tiny-ctl-foreign" not in listed
        assert f"ctl-reap-alive | {alive['id']} | healthy: heartbeat" in said
        assert not [r for r in emulator.requests(seq) if r["method"] == "DELETE"], "--check destroys nothing"

        unasked = ansible.playbook("playbooks/teardown.yml", *reap)  # no terminal to ask on
        assert unasked.rc != 0 and "add -e yes=true" in unasked.out, unasked.out[-2000:]
        assert len(emulator.state()["instances"]) >= 5

        reaped = ansible.playbook("playbooks/teardown.yml", *reap, "-e", "yes=true")
        assert reaped.rc == 0, reaped.out[-3000:]
        left = {r["id"] for r in emulator.state()["instances"]}
        assert stale["id"] not in left and silent["id"] not in left
        assert {alive["id"], foreign["id"], unlabelled["id"]} <= left
    finally:
        for row in (foreign, unlabelled):
            if emulator.instance(row["id"]):
                emulator.destroy(row["id"])


# -- nothing rented by mistake and left running -----------------------------------------------------------------

LAUNCH = ["-e", "config=tiny", "-e", "provision=false"]


def _start(ansible, playbook: str, *args: str, env: dict, log: Path) -> subprocess.Popen:
    """ansible-playbook in the background, in its own session (a terminal's Ctrl-C reaches its group)."""
    argv = [str(VENV_BIN / "ansible-playbook"), playbook, *ansible.common_vars, *args]
    with open(log, "w") as out:
        return subprocess.Popen(argv, cwd=REPO, env={**ansible.env, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(what, predicate, timeout: float = 60.0, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(step)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _journal_files(state: Path) -> list[Path]:
    return sorted((state / "journal").glob("*.json")) if (state / "journal").is_dir() else []


def _stuck_launch(ansible, emulator, tmp_path, label: str, *extra: str, state: Path | None = None):
    """A launch whose instance sticks in loading; returns (process, log, instance row) once it waits."""
    state = state or tmp_path / "vastkit"
    emulator.set_faults({"kind": "stuck_loading", "target": {"label": label}})
    log = tmp_path / f"{label}.log"
    proc = _start(ansible, "launch.yml", *LAUNCH, "-e", f"run_name={label}", "-e", "loading_timeout=120", *extra,
                  env={"VASTKIT_STATE_DIR": str(state)}, log=log)
    row = _wait_for(f"{label}'s instance created", lambda: instances(emulator, label), timeout=90)[0]
    assert row["actual_status"] in ("created", "loading"), row
    _wait_for("the journal names it", lambda: any(str(row["id"]) in p.read_text() for p in _journal_files(state)))
    time.sleep(1.0)  # the module is in its wait now
    return proc, log, row


@pytest.mark.parametrize("how", ["ctrl_c_to_the_group", "sigterm_to_ansible", "sigkill_of_ansible"])
def test_interrupted_launch_destroys_what_it_created(ansible, emulator, tmp_path, how):
    label = f"ctl-int-{how.split('_')[0]}"
    proc, log, row = _stuck_launch(ansible, emulator, tmp_path, label)
    if how == "ctrl_c_to_the_group":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    elif how == "sigterm_to_ansible":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.kill()  # no signal reaches the module: it notices that ansible-playbook is gone
    proc.wait(timeout=60)
    assert proc.returncode != 0
    _wait_for("the interrupted launch's instance destroyed", lambda: not instances(emulator, label), timeout=45)
    # The emulator logs a request once it has answered it: the instance can be gone a moment before its DELETE
    # is in the log.
    deletes = _wait_for("the DELETE in the request log", lambda: [
        r for r in emulator.requests() if r["method"] == "DELETE" and f"/instances/{row['id']}/" in r["path"]],
        timeout=10)
    assert deletes[0]["status"] == 200
    _wait_for("the journal cleared", lambda: not _journal_files(tmp_path / "vastkit"), timeout=20)


def test_a_killed_controller_is_cleaned_up_by_the_next_status(ansible, emulator, tmp_path):
    label = "ctl-killed"
    proc, log, row = _stuck_launch(ansible, emulator, tmp_path, label)
    for pid in [proc.pid, *_descendants(proc.pid)]:  # SIGKILL everything, the module process too
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2)
    assert [r["id"] for r in instances(emulator, label)] == [row["id"]], "nothing could clean up: all were killed"
    assert _journal_files(tmp_path / "vastkit")

    status = ansible.playbook("playbooks/status.yml", "-e", f"run={label}",
                              env={"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")})
    assert status.rc == 0, status.out[-3000:]
    assert f"{label} {row['id']} destroyed" in status.out
    assert instances(emulator, label) == [] and not _journal_files(tmp_path / "vastkit")
    again = ansible.playbook("playbooks/status.yml", "-e", f"run={label}",
                             env={"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")})
    assert again.rc == 0 and "destroyed" not in again.out.split("Find the runs' instances", 1)[0]


def test_teardown_while_the_launch_waits_stops_the_launch(ansible, emulator, tmp_path):
    label = "ctl-torn"
    seq = last_seq(emulator)
    proc, log, row = _stuck_launch(ansible, emulator, tmp_path, label)
    down = ansible.playbook("playbooks/teardown.yml", "-e", f"run={label}",
                            env={"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")})
    assert down.rc == 0, down.out[-3000:]
    proc.wait(timeout=60)
    out = log.read_text()
    assert proc.returncode != 0 and "disappeared while this launch waited for it" in out, out[-3000:]
    assert "not renting a replacement" in out
    assert len(creates_since(emulator, seq)) == 1 and instances(emulator, label) == []


def test_two_launches_of_one_run_on_one_machine(ansible, emulator, tmp_path):
    label = "ctl-twice"
    seq = last_seq(emulator)
    first, log, row = _stuck_launch(ansible, emulator, tmp_path, label)  # holds the run's lock while it waits
    second = ansible.playbook("launch.yml", *LAUNCH, "-e", f"run_name={label}",
                              env={"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")})
    assert second.rc != 0
    assert f"another launch of run '{label}' is in progress on this machine" in " ".join(second.out.split())
    assert len(creates_since(emulator, seq)) == 1 and [r["id"] for r in instances(emulator, label)] == [row["id"]]
    os.killpg(first.pid, signal.SIGINT)
    first.wait(timeout=60)
    _wait_for("the first launch's instance destroyed", lambda: not instances(emulator, label), timeout=45)


def _rent_playbook(tmp_path: Path, label: str, key, **args) -> Path:
    """A playbook of one vast_instance call (where launch.yml's other steps are not under test)."""
    playbook = tmp_path / f"rent-{label}.yml"
    playbook.write_text(json.dumps([{"name": "Rent", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Rent the run's instance", "universal_simulator.vastai.vast_instance": {
            "label": label, "state": "running", "disk": 16, "min_reliability": 0.9, "poll_interval": 0.5,
            "ssh_key_file": str(key), **args}, "register": "rented"},
        {"name": "Show the attempts", "ansible.builtin.debug": {"var": "rented.attempts"}}]}]))
    return playbook


def test_an_ambiguous_create_is_used_or_cleaned_up_when_it_lists_late(ansible, emulator, ssh_keypair, tmp_path):
    state = {"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")}
    # Answered 504 but made, and listed 2 s later: found by its create token within the window, used.
    emulator.set_faults({"kind": "slow_create", "target": "next_create", "list_after_s": 2})
    seq = last_seq(emulator)
    found = ansible.playbook(str(_rent_playbook(tmp_path, "ctl-slow", ssh_keypair.private_key,
                                                create_lookup_window=15)), env=state)
    assert found.rc == 0, found.out[-3000:]
    assert "found its instance by its create token" in " ".join(found.out.split())
    assert len(creates_since(emulator, seq)) == 1 and len(instances(emulator, "ctl-slow")) == 1

    # Listed only after the window (and after the launch): the next status on this machine destroys it.
    emulator.set_faults({"kind": "slow_create", "target": "next_create", "list_after_s": 9})
    seq = last_seq(emulator)
    late = ansible.playbook(str(_rent_playbook(tmp_path, "ctl-late", ssh_keypair.private_key,
                                               create_lookup_window=1)), env=state)
    assert late.rc == 0, late.out[-3000:]
    assert len(creates_since(emulator, seq)) == 2 and len(instances(emulator, "ctl-late")) == 2
    kept = [r["id"] for r in instances(emulator, "ctl-late") if r["actual_status"] == "running"]
    assert _journal_files(tmp_path / "vastkit"), "the unanswered create stays in the journal"
    api = VastAPI.from_env(api_key=emulator.api_key, url=emulator.url)
    _wait_for("the late instance listed", lambda: len(api.list_instances(label="ctl-late")) == 2, timeout=30)
    status = ansible.playbook("playbooks/status.yml", "-e", "run=ctl-late", env=state)
    assert status.rc == 0 and "destroyed" in status.out, status.out[-3000:]
    left = [r["id"] for r in instances(emulator, "ctl-late")]
    assert len(left) == 1 and left[0] in kept and not _journal_files(tmp_path / "vastkit")


def test_a_launch_elsewhere_that_rented_first_wins(ansible, emulator, ssh_keypair, tmp_path):
    """Two machines (no shared lock) launch one run: the instance with the lower id stays, the other goes."""
    label = "ctl-race"
    playbook = _rent_playbook(tmp_path, label, ssh_keypair.private_key)
    # Our search is answered 429 (Retry-After 3 s): meanwhile the other machine's launch rents first.
    emulator.set_faults({"kind": "http_error", "status": 429, "path": "/api/v0/bundles/", "count": 1,
                         "retry_after": 3})
    seq = last_seq(emulator)
    log = tmp_path / "race.log"
    proc = _start(ansible, str(playbook), env={"VASTKIT_STATE_DIR": str(tmp_path / "vastkit")}, log=log)
    _wait_for("our search answered 429", lambda: any(
        r["status"] == 429 and r["path"].startswith("/api/v0/bundles/") for r in emulator.requests(seq)))
    rival = emulator.launch(label=label)  # listed after our lookup, before our create: a lower id
    proc.wait(timeout=120)
    out = " ".join(log.read_text().split())
    assert proc.returncode != 0 and "the lowest id wins" in out, out[-3000:]
    assert f"the run continues on instance {rival}" in out.lower()
    assert [r["id"] for r in instances(emulator, label)] == [rival]
    assert len([r for r in creates_since(emulator, seq) if r["status"] == 200]) == 2
