"""Every fault is observable through the API, SSH, or the processes it leaves (or doesn't)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from vast_emulator.testing import EmulatorError, connect_ssh, running_emulator, ssh_run, stray_processes


@pytest.fixture(autouse=True)
def _clean_faults(emulator):
    yield
    emulator.reset_faults()


def _offers(emulator, gpu="RTX 4090"):
    return [o["id"] for o in emulator.search({"gpu_name": {"eq": gpu}, "num_gpus": {"eq": "1"}})]


def _create(emulator, offer_id, **body):
    return emulator.api("PUT", f"/api/v0/asks/{offer_id}/", json={"image": "vastai/pytorch", "disk": 10.0, **body})


def _processes_of(emulator, instance_id):
    marker = f"/instances/{instance_id}"
    found = []
    for pid in stray_processes(emulator.state_dir):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_create_queue_offer_gone_then_stuck_loading_then_works(emulator):
    emulator.set_faults([
        {"kind": "offer_gone", "target": "next_create"},
        {"kind": "stuck_loading", "target": "next_create"},
    ])
    first, second, third = _offers(emulator)[:3]
    gone = _create(emulator, first)
    assert gone.status_code == 404 and "no_such_ask" in gone.json()["msg"]
    assert first not in _offers(emulator)  # rented by "someone else"

    stuck_id = _create(emulator, second).json()["new_contract"]
    good_id = _create(emulator, third).json()["new_contract"]
    try:
        emulator.wait_status(good_id, "running")
        time.sleep(0.5)
        stuck = emulator.instance(stuck_id)
        assert stuck["actual_status"] == "loading" and stuck["ports"] == {}
        assert _processes_of(emulator, stuck_id) == []
    finally:
        emulator.destroy(stuck_id)
        emulator.destroy(good_id)


def test_offer_ids_gone_with_410(emulator):
    offer = _offers(emulator, "L40S")[0]
    emulator.set_faults({"kind": "offer_gone", "offer_ids": [offer], "status": 410})
    assert offer not in _offers(emulator, "L40S")
    response = _create(emulator, offer, cancel_unavail=True)
    assert response.status_code == 410 and response.json()["error"] == "no_such_ask"
    emulator.reset_faults()
    assert offer in _offers(emulator, "L40S")


def test_429_burst_with_retry_after_on_one_path(emulator):
    emulator.set_faults({"kind": "http_error", "status": 429, "count": 2, "retry_after": 1, "path": "/api/v0/bundles/"})
    other = emulator.api("GET", "/api/v0/users/current")
    assert other.status_code == 200
    hits = [emulator.api("POST", "/api/v0/bundles/", json={}, wait_rate_limit=False) for _ in range(3)]
    assert [h.status_code for h in hits] == [429, 429, 200]
    assert hits[0].headers["Retry-After"] == "1"
    assert "too frequent" in hits[0].text
    assert [e["fault"] for e in emulator.requests()[-3:]] == ["http_error 429", "http_error 429", None]


def test_429_without_retry_after_and_5xx(emulator):
    emulator.set_faults([
        {"kind": "http_error", "status": 429, "count": 1, "method": "GET"},
        {"kind": "http_error", "status": 503, "count": 1},
        {"kind": "http_error", "status": 500, "count": 1},
    ])
    limited = emulator.api("GET", "/api/v0/users/current", wait_rate_limit=False)
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert emulator.api("GET", "/api/v0/users/current").status_code == 503
    broken = emulator.api("GET", "/api/v0/users/current")
    assert broken.status_code == 500 and broken.json()["success"] is False
    assert emulator.api("GET", "/api/v0/users/current").status_code == 200


def test_the_real_cli_retries_through_a_429_with_retry_after(emulator, vastai):
    since = emulator.requests()[-1]["seq"]
    emulator.set_faults({"kind": "http_error", "status": 429, "count": 1, "retry_after": 1, "path": "/api/v0/users/current"})
    result = vastai("show", "user", "--raw")
    assert json.loads(result.stdout)["username"] == "emulator"
    calls = [e for e in emulator.requests(since) if e["path"] == "/api/v0/users/current"]
    assert [c["status"] for c in calls][:2] == [429, 200]  # the CLI waited Retry-After and tried again
    assert calls[1]["time"] - calls[0]["time"] >= 0.9


@pytest.mark.parametrize("status", ["exited", "offline"])
def test_instance_goes_exited_or_offline(emulator, status):
    emulator.set_faults({"kind": "status", "status": status, "after_s": 0.5, "target": "next_create"})
    instance_id = emulator.launch(gpu_name="RTX 3090")
    try:
        emulator.wait_status(instance_id, "running")
        row = emulator.wait_status(instance_id, status, timeout=10)
        assert row["intended_status"] == "running" and row["ports"] == {}
        assert _processes_of(emulator, instance_id) == []
    finally:
        emulator.destroy(instance_id)


def test_ssh_refused_for_the_first_seconds_after_running(emulator, ssh_keypair):
    emulator.set_faults({"kind": "ssh_refused", "seconds": 2, "target": {"label": "late-ssh"}})
    instance_id = emulator.launch(gpu_name="RTX 3090", label="late-ssh")
    try:
        row = emulator.wait_status(instance_id, "running")
        running_at = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", row["ssh_port"]), timeout=2).close()
        client = connect_ssh(row, ssh_keypair.private_key, timeout=10)
        assert time.monotonic() - running_at > 1.0
        assert ssh_run(client, "echo up")[1].strip() == "up"
        client.close()
    finally:
        emulator.destroy(instance_id)


def test_preempt_after_a_delay(emulator):
    emulator.set_faults({"kind": "preempt", "after_s": 1.0, "target": "next_create"})
    instance_id = emulator.launch(gpu_name="RTX 3090")
    try:
        emulator.wait_status(instance_id, "running")
        assert emulator.instance(instance_id)["actual_status"] == "running"
        emulator.wait_status(instance_id, "stopped", timeout=10)
    finally:
        emulator.destroy(instance_id)


def test_bad_fault_spec_is_rejected_with_a_clear_message(emulator):
    response = emulator.api("POST", "/_emulator/faults", json={"faults": [{"kind": "meteor"}]})
    assert response.status_code == 400 and "unknown fault kind 'meteor'" in response.json()["msg"]
    response = emulator.api("POST", "/_emulator/faults", json={"kind": "ssh_refused", "seconds": 1})
    assert response.status_code == 400 and "target" in response.json()["msg"]


def test_faults_file_at_startup(tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"faults": [{"kind": "http_error", "status": 502, "count": 1, "path": "/api/v0/users/current"}]}))
    with running_emulator(tmp_path / "state", faults_file=faults) as emu:
        first = requests.get(f"{emu.url}/api/v0/users/current", headers={"Authorization": f"Bearer {emu.api_key}"})
        assert first.status_code == 502
        assert emu.api("GET", "/api/v0/users/current").status_code == 200


def _ssh(row, key, command):
    client = connect_ssh(row, key)
    try:
        return ssh_run(client, command)
    finally:
        client.close()


def _wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _boots(emulator, instance_id):
    """Lines in /workspace/boots, read from the host through the instance's own root."""
    try:
        return (emulator.instance_root(instance_id) / "workspace/boots").read_text().count("\n")
    except (OSError, EmulatorError):  # not running (yet), or onstart has not written it
        return -1


def _states(row):
    return [row[k] for k in ("actual_status", "intended_status", "cur_state", "next_state")]


def test_restart_kills_everything_reruns_onstart_and_keeps_disk_and_start_date(emulator, ssh_keypair):
    instance_id = emulator.launch(gpu_name="RTX 3090", onstart="echo boot >> /workspace/boots; sleep 600")
    try:
        row = emulator.wait_status(instance_id)
        _wait_for(lambda: _boots(emulator, instance_id) == 1, what="the first onstart")
        _ssh(row, ssh_keypair.private_key, "echo kept > /workspace/data")
        before = emulator.instance_pids(instance_id)
        emulator.set_faults({"kind": "restart", "target": {"instance_id": instance_id}, "after_s": 0.2})
        loading = emulator.wait_status(instance_id, "loading", timeout=10)
        assert loading["intended_status"] == "running" and "restart" in loading["status_msg"].lower()
        row = emulator.wait_status(instance_id, "running", timeout=10)
        assert not set(before) & set(emulator.instance_pids(instance_id)), "every process of the instance died"
        _wait_for(lambda: _boots(emulator, instance_id) == 2, what="onstart to run again")
        assert _ssh(row, ssh_keypair.private_key, "cat /workspace/data")[1].strip() == "kept"
        assert row["start_date"] == loading["start_date"] and _states(row) == ["running"] * 4
        # The API's reboot is the same kind of restart, on request.
        emulator.api("PUT", f"/api/v0/instances/reboot/{instance_id}/")
        rebooted = emulator.wait_status(instance_id, "running", timeout=10)
        _wait_for(lambda: _boots(emulator, instance_id) == 3, what="onstart after reboot")
        assert rebooted["start_date"] == row["start_date"]
    finally:
        emulator.destroy(instance_id)


def test_preempt_now_is_the_outbid_signal_and_start_resumes(emulator, ssh_keypair):
    instance_id = emulator.launch(gpu_name="RTX 3090")
    try:
        row = emulator.wait_status(instance_id)
        _ssh(row, ssh_keypair.private_key, "echo survived > /workspace/file")
        result = emulator.set_faults({"kind": "preempt", "target": {"instance_id": instance_id}})
        assert result["hit_instances"] == [instance_id]
        row = emulator.wait_status(instance_id, "stopped", timeout=10)
        assert _states(row) == ["stopped"] * 4  # cur_state == intended_status == next_state == "stopped"
        assert "preempted" in row["status_msg"] and "outbid" in row["status_msg"]
        assert _processes_of(emulator, instance_id) == []
        time.sleep(0.5)
        assert emulator.instance(instance_id)["actual_status"] == "stopped"  # no resume_after_s: stays stopped
        emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "running"})
        row = emulator.wait_status(instance_id)
        assert _ssh(row, ssh_keypair.private_key, "cat /workspace/file")[1].strip() == "survived"
    finally:
        emulator.destroy(instance_id)


def test_preempt_with_resume_after_s_comes_back_by_itself(emulator):
    # Stopped long enough for a poll on a loaded box to see it (0.5 s was missed under CI load).
    emulator.set_faults({"kind": "preempt", "target": "next_create", "after_s": 0.3, "resume_after_s": 4})
    instance_id = emulator.launch(gpu_name="RTX 3090", onstart="echo boot >> /workspace/boots")
    try:
        started = emulator.wait_status(instance_id)
        stopped = emulator.wait_status(instance_id, "stopped", timeout=10)
        assert _states(stopped) == ["stopped"] * 4
        row = emulator.wait_status(instance_id, "running", timeout=10)
        assert _states(row) == ["running"] * 4 and row["start_date"] == started["start_date"]
        _wait_for(lambda: _boots(emulator, instance_id) == 2, what="onstart after the resume")
    finally:
        emulator.destroy(instance_id)


def test_sshd_dies_alone_and_the_instance_stays_running(emulator, ssh_keypair):
    onstart = "while :; do date +%s%N > /workspace/heartbeat; sleep 0.05; done"
    instance_id = emulator.launch(gpu_name="RTX 3090", onstart=onstart)
    try:
        row = emulator.wait_status(instance_id)
        _ssh(row, ssh_keypair.private_key, "tmux new-session -d -s training 'sleep 600'")
        emulator.set_faults({"kind": "sshd_dies", "target": {"instance_id": instance_id}})

        def refused():
            try:
                socket.create_connection(("127.0.0.1", row["ssh_port"]), timeout=2).close()
            except ConnectionRefusedError:
                return True
            return False

        _wait_for(refused, what="sshd to die")
        row = emulator.instance(instance_id)
        assert _states(row) == ["running"] * 4 and row["ports"]
        names = _process_names(emulator.instance_pids(instance_id))
        assert "sshd" not in names and any(n.startswith("tmux") for n in names)
        beat = emulator.instance_root(instance_id) / "workspace/heartbeat"
        first = beat.read_text()
        _wait_for(lambda: beat.read_text() != first, what="onstart's loop to go on")
    finally:
        emulator.destroy(instance_id)


def test_workspace_has_the_rented_size_and_disk_full_gives_enospc(emulator, ssh_keypair):
    instance_id = emulator.launch(gpu_name="RTX 3090", disk=10.0)
    write = "dd if=/dev/zero of=/workspace/blob bs=1M count=4 conv=fsync 2>&1; echo rc=$?; rm -f /workspace/blob"
    try:
        row = emulator.wait_status(instance_id)
        size = _ssh(row, ssh_keypair.private_key, "df -B1 --output=size /workspace | tail -1")[1]
        assert 9.5 * 2**30 < int(size) <= 10 * 2**30
        emulator.set_faults({"kind": "disk_full", "target": {"instance_id": instance_id}, "free_bytes": 1_000_000,
                             "for_s": 1.5})
        root = emulator.instance_root(instance_id)
        _wait_for(lambda: (root / "workspace/.emulator-disk-fill").exists(), what="the fill")
        _wait_for(lambda: os.statvfs(root / "workspace").f_bavail * 4096 <= 1_000_000, what="the disk to be full")
        status, out, _ = _ssh(row, ssh_keypair.private_key, write)
        assert "No space left on device" in out and "rc=1" in out
        _wait_for(lambda: not (root / "workspace/.emulator-disk-fill").exists(), timeout=10, what="for_s to end")
        assert "rc=0" in _ssh(row, ssh_keypair.private_key, write)[1]

        emulator.set_faults({"kind": "disk_full", "target": {"instance_id": instance_id}})
        _wait_for(lambda: (root / "workspace/.emulator-disk-fill").exists(), what="the fill")
        assert "No space left on device" in _ssh(row, ssh_keypair.private_key, write)[1]
        emulator.set_faults({"kind": "disk_free", "target": {"instance_id": instance_id}})
        _wait_for(lambda: not (root / "workspace/.emulator-disk-fill").exists(), what="disk_free")
        assert "rc=0" in _ssh(row, ssh_keypair.private_key, write)[1]
    finally:
        emulator.destroy(instance_id)


def test_http_error_for_s_refuses_instance_key_deletes_then_works(emulator):
    offer = _offers(emulator, "RTX 3090")[0]
    created = _create(emulator, offer).json()
    instance_id, key = created["new_contract"], created["instance_api_key"]
    emulator.set_faults({"kind": "http_error", "status": 503, "for_s": 1.5, "method": "DELETE",
                         "path": "/api/v0/instances/", "caller": "instance"})
    started = time.monotonic()
    try:
        refused = [emulator.api("DELETE", f"/api/v0/instances/{instance_id}/", key=key).status_code for _ in range(3)]
        assert refused == [503, 503, 503]
        assert emulator.api("GET", f"/api/v0/instances/{instance_id}/?owner=me", key=key).status_code == 200
        log = [e for e in emulator.requests()[-4:] if e["method"] == "DELETE"]
        assert [(e["caller"], e["fault"]) for e in log] == [(f"instance:{instance_id}", "http_error 503")] * 3
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        assert emulator.api("DELETE", f"/api/v0/instances/{instance_id}/", key=key).status_code == 200
    finally:
        if emulator.instance(instance_id):
            emulator.destroy(instance_id)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"kind": "restart", "target": "next_create", "after_s": -1}, "after_s must be a number >= 0"),
        ({"kind": "sshd_dies", "target": "next_create", "for_s": 1}, "unknown key(s) for_s"),
        ({"kind": "disk_full", "target": "next_create", "free_bytes": 1.5}, "free_bytes must be an integer >= 0"),
        ({"kind": "disk_full", "target": "next_create", "for_s": 0}, "for_s must be a number > 0"),
        ({"kind": "disk_free"}, "target must be"),
        ({"kind": "preempt", "target": "next_create", "resume_after_s": "soon"}, "resume_after_s must be a number"),
        ({"kind": "http_error", "status": 503, "count": 2, "for_s": 5}, "count (requests) or for_s (seconds), not both"),
        ({"kind": "http_error", "status": 503, "for_s": 0}, "for_s must be a number > 0"),
        ({"kind": "http_error", "status": 503, "caller": "root"}, "caller must be"),
    ],
)
def test_new_fault_specs_are_validated(emulator, spec, needle):
    response = emulator.api("POST", "/_emulator/faults", json={"faults": [spec]})
    assert response.status_code == 400 and needle in response.json()["msg"], response.text


def _process_names(pids) -> list[str]:
    """The names of those of `pids` still alive (the onstart loop's short-lived date and sleep come and go)."""
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return names
