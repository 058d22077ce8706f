"""Every fault is observable through the API, SSH, or the processes it leaves (or doesn't)."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from vast_emulator.testing import connect_ssh, running_emulator, ssh_run, stray_processes


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
    hits = [emulator.api("POST", "/api/v0/bundles/", json={}) for _ in range(3)]
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
    limited = emulator.api("GET", "/api/v0/users/current")
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


def test_preempt_now_keeps_disk_kills_processes_and_start_resumes(emulator, ssh_keypair):
    instance_id = emulator.launch(gpu_name="RTX 3090")
    try:
        client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
        ssh_run(client, "echo survived > /workspace/file")
        client.close()
        result = emulator.set_faults({"kind": "preempt", "target": {"instance_id": instance_id}})
        assert result["hit_instances"] == [instance_id]
        row = emulator.wait_status(instance_id, "stopped", timeout=10)
        assert "preempted" in row["status_msg"]
        assert _processes_of(emulator, instance_id) == []
        emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "running"})
        client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
        assert ssh_run(client, "cat /workspace/file")[1].strip() == "survived"
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
