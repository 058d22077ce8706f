"""status.yml, logs.yml and teardown.yml on a launched run, over real SSH (and the API when SSH is refused)."""

from __future__ import annotations

import json

from ctl_support import instances

from vast_emulator.testing import connect_ssh, make_ssh_keypair, ssh_run

CODE_DIR = "/workspace/universal_simulator"
STATUS = {"run_name": "ctl-ops", "stage": "operator", "step": 120, "total_steps": 400, "loss": 0.0123,
          "samples_per_s": 850.0, "eta_s": 33, "state": "running", "error": None,
          "wandb_url": "https://wandb.ai/team/universal-simulator/runs/abc123", "updated_at": "2026-11-28T14:05:00+00:00"}
HEARTBEAT = {"pid": 4242, "started_at": "2026-11-28T14:00:00+00:00", "updated_at": "2026-11-28T14:05:00+00:00",
             "state": "training", "stage": "operator", "step": 120, "elapsed_s": 300.0, "dph": 0.5,
             "cost_so_far": 0.0417, "max_runtime_hours": 24, "max_cost": None}


def _rent(emulator, label: str) -> dict:
    """An instance straight through the API (launch.yml itself is tested in test_launch.py)."""
    return emulator.wait_status(emulator.launch(label=label, onstart="echo onstart-of-$CONTAINER_ID"), "running")


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
    assert "training: running, stage operator, step 120/400, loss 0.0123, eta 33 s" in status.out
    assert "W&B: https://wandb.ai/team/universal-simulator/runs/abc123" in status.out
    assert "cost so far ~$0.04" in status.out
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


def test_reaper_takes_only_old_project_runs(ansible, emulator):
    for name in ("tiny-ctl-reap", "ctl-keep"):
        _rent(emulator, name)
    young = ansible.playbook("playbooks/teardown.yml", "-e", "all_runs=true", "-e", "older_than=1h")
    assert young.rc == 0 and "Nothing to tear down." in young.out
    reaped = ansible.playbook("playbooks/teardown.yml", "-e", "all_runs=true", "-e", "older_than=1s")
    assert reaped.rc == 0, reaped.out
    remaining = [r["label"] for r in emulator.state()["instances"]]
    assert "tiny-ctl-reap" not in remaining and "ctl-keep" in remaining  # ctl-keep starts with no config name
    for row in emulator.state()["instances"]:
        if row["label"] == "tiny-ctl-reap":
            emulator.destroy(row["id"])
