"""What the real API does that a kind emulator would not: rate limits, team keys, image CUDA against the
driver, masked env-vars, odd answers (a failed destroy that says 200, an error carrying new_contract), rows with
nulls, a create that lists late, and two SSH addresses of which the direct one may be blocked."""

from __future__ import annotations

import socket
import time

import paramiko
import pytest

from vast_emulator.testing import connect_ssh, ssh_run

AUTO = "vastai/pytorch:@vastai-automatic-tag"


def _offer(emulator, *, cuda_at_most=None, cuda_at_least=None, gpu="RTX 4090"):
    query = {"gpu_name": {"eq": gpu}, "num_gpus": {"eq": "1"}}
    if cuda_at_most is not None:
        query["cuda_max_good"] = {"lte": cuda_at_most}
    if cuda_at_least is not None:
        query["cuda_max_good"] = {**query.get("cuda_max_good", {}), "gte": cuda_at_least}
    found = emulator.search(query)
    assert found, f"the catalogue has a {gpu} with cuda {cuda_at_least}..{cuda_at_most}"
    return found[0]


def _create(emulator, offer_id, key=None, wait_rate_limit=True, **body):
    create = {"image": "vastai/pytorch", "disk": 10.0, "runtype": "ssh_direc ssh_proxy", **body}
    return emulator.api("PUT", f"/api/v0/asks/{offer_id}/", key=key, json=create, wait_rate_limit=wait_rate_limit)


def _wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_rate_limits_at_vasts_own_intervals(emulator):
    """Scale 1: a second create inside 4.5 s gets a plain-text 429, and creates stay refused for 12 s."""
    scale = emulator.rate_limit_scale
    emulator.settings(rate_limit_scale=1.0)
    created = []
    try:
        first = _create(emulator, _offer(emulator)["id"], wait_rate_limit=False)
        assert first.status_code == 200, first.text
        created.append(first.json()["new_contract"])
        refused = _create(emulator, _offer(emulator)["id"], wait_rate_limit=False)
        assert refused.status_code == 429
        assert refused.text == "API requests too frequent endpoint threshold=4.5"
        assert refused.headers["Content-Type"] == "text/plain" and "Retry-After" not in refused.headers
        time.sleep(4.7)  # past the interval, but the refused create started a 12 s penalty
        assert _create(emulator, _offer(emulator)["id"], wait_rate_limit=False).status_code == 429

        show = f"/api/v0/instances/{created[0]}/?owner=me"
        assert emulator.api("GET", show, wait_rate_limit=False).status_code == 200
        again = emulator.api("GET", show, wait_rate_limit=False)
        assert again.status_code == 429 and again.text.endswith("threshold=2")
        # Another identity (a second key of the account) has its own intervals.
        assert emulator.api("GET", show, key=emulator.team_key(), wait_rate_limit=False).status_code == 200
        log = emulator.requests()[-8:]
        assert [e["status"] for e in log if e["fault"] == "rate_limit"] == [429] * 3
    finally:
        emulator.settings(rate_limit_scale=scale)
        for instance_id in created:
            emulator.destroy(instance_id)


def test_a_team_key_cannot_register_ssh_keys_but_can_attach_them(emulator, ssh_keypair):
    team = emulator.team_key()
    refused = emulator.api("POST", "/api/v0/ssh/", key=team, json={"ssh_key": ssh_keypair.public_key})
    assert refused.status_code == 400 and refused.json()["error"] == "team_ssh_keys_not_supported"
    created = _create(emulator, _offer(emulator)["id"], key=team)
    assert created.status_code == 200, created.text
    instance_id = created.json()["new_contract"]
    try:
        attached = emulator.api("POST", f"/api/v0/instances/{instance_id}/ssh/", key=team,
                                json={"ssh_key": ssh_keypair.public_key})
        assert attached.status_code == 200 and attached.json()["success"]
        assert emulator.api("GET", "/_emulator/state", key=team).status_code == 403  # admin: the account key only
    finally:
        emulator.destroy(instance_id)


def test_the_automatic_tag_fits_the_driver_and_a_newer_cuda_never_starts(emulator):
    host = _offer(emulator, cuda_at_least=12.8, cuda_at_most=12.8)
    auto = _create(emulator, host["id"], image=AUTO).json()["new_contract"]
    try:
        row = emulator.wait_status(auto, "running")
        assert row["image_uuid"] == "vastai/pytorch:cuda-12.8.1-auto"
    finally:
        emulator.destroy(auto)
    too_new = _create(emulator, host["id"], image="vastai/pytorch:cuda-13.0.2-auto").json()["new_contract"]
    try:
        time.sleep(1.0)  # more than the loading delay: it would be running by now
        row = emulator.instance(too_new)
        assert row["actual_status"] == "created" and row["cur_state"] == "running"
        assert "OCI runtime create failed" in row["status_msg"] and "cuda>=13.0" in row["status_msg"]
        assert emulator.instance_pids(too_new) == []
    finally:
        emulator.destroy(too_new)


def test_env_var_values_read_masked_and_strict_mode_enforces_the_pattern(emulator):
    emulator.settings(strict_env_values=True)
    try:
        url = emulator.api("POST", "/api/v0/secrets/", json={"key": "QUIRK_ENDPOINT", "value": "https://s3.example.com"})
        assert url.status_code == 400 and url.json()["error"] == "invalid_characters"
        host = emulator.api("POST", "/api/v0/secrets/", json={"key": "QUIRK_ENDPOINT", "value": "s3.us-west-004.b2.com"})
        assert host.status_code == 200, host.text
        assert emulator.api("GET", "/api/v0/secrets/").json()["secrets"]["QUIRK_ENDPOINT"] == "********"
        assert emulator.secrets()["QUIRK_ENDPOINT"] == "s3.us-west-004.b2.com"
    finally:
        emulator.settings(strict_env_values=False)
        emulator.api("DELETE", "/api/v0/secrets/", json={"key": "QUIRK_ENDPOINT"})


def test_a_bid_below_min_bid_is_refused_but_creates_a_stopped_instance(emulator):
    offer = emulator.search({"gpu_name": {"eq": "RTX 3090"}, "num_gpus": {"eq": "1"}}, type="bid")[0]
    answer = _create(emulator, offer["id"], price=round(offer["min_bid"] / 2, 4))
    body = answer.json()
    assert answer.status_code == 200 and body["success"] is False and body["error"] == "insufficient_bid"
    instance_id = body["new_contract"]
    try:
        row = emulator.instance(instance_id)
        assert (row["actual_status"], row["intended_status"], row["cur_state"], row["next_state"]) == ("stopped",) * 4
        assert row["is_bid"] and "minimum bid" in row["status_msg"]
    finally:
        emulator.destroy(instance_id)
    gone = emulator.api("DELETE", f"/api/v0/instances/{instance_id}/")
    assert gone.status_code == 200 and gone.json() == {"success": False, "error": "no_such_instance",
                                                       "msg": f"Instance {instance_id} not found."}


def test_a_slow_create_answers_5xx_and_lists_late(emulator):
    emulator.set_faults({"kind": "slow_create", "target": "next_create", "status": 502, "list_after_s": 1.5})
    answer = _create(emulator, _offer(emulator)["id"], label="quirk-late")
    assert answer.status_code == 502 and answer.headers["Content-Type"] == "text/html"
    answered = time.monotonic()

    def labelled():
        return [r for r in emulator.api("GET", "/api/v0/instances/").json()["instances"] if r["label"] == "quirk-late"]

    assert labelled() == []
    _wait_for(lambda: labelled() != [], what="the late listing")
    assert time.monotonic() - answered >= 1.4
    emulator.destroy(labelled()[0]["id"])


def test_rows_with_null_fields_until_running(emulator):
    emulator.set_faults({"kind": "null_fields", "target": "next_create", "fields": ["start_date", "ssh_host"]})
    instance_id = _create(emulator, _offer(emulator)["id"]).json()["new_contract"]
    try:
        early = emulator.instance(instance_id)
        assert early["start_date"] is None and early["ssh_host"] is None and early["actual_status"] != "running"
        row = emulator.wait_status(instance_id, "running")
        assert isinstance(row["start_date"], float) and row["ssh_host"]
    finally:
        emulator.destroy(instance_id)


def _login(host, port, key):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(host, port=port, username="root", key_filename=str(key), look_for_keys=False,
                       allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
        return ssh_run(client, "hostname")[1].strip()
    finally:
        client.close()


def test_direct_and_proxy_addresses_reach_one_sshd_and_direct_can_be_blocked(emulator, ssh_keypair):
    instance_id = _create(emulator, _offer(emulator)["id"]).json()["new_contract"]
    emulator.set_faults([{"kind": "direct_blocked", "target": "next_create"}])
    blocked_id = _create(emulator, _offer(emulator)["id"]).json()["new_contract"]
    try:
        row = emulator.wait_status(instance_id, "running")
        direct = (row["public_ipaddr"], int(row["ports"]["22/tcp"][0]["HostPort"]))
        proxy = (row["ssh_host"], row["ssh_port"])
        assert direct[0] == "127.0.0.1" and proxy[0] == "127.0.0.2" and direct[1] != proxy[1]
        _wait_for(lambda: _login(*proxy, ssh_keypair.private_key) == f"C.{instance_id}", what="the proxy")
        assert _login(*direct, ssh_keypair.private_key) == f"C.{instance_id}"

        row = emulator.wait_status(blocked_id, "running")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((row["public_ipaddr"], int(row["ports"]["22/tcp"][0]["HostPort"])), timeout=2)
        _wait_for(lambda: _login(row["ssh_host"], row["ssh_port"], ssh_keypair.private_key) == f"C.{blocked_id}",
                  what="the proxy of the blocked instance")
    finally:
        emulator.reset_faults()
        emulator.destroy(instance_id)
        emulator.destroy(blocked_id)


def test_a_proxy_only_instance_and_banner_then_eof(emulator, ssh_keypair):
    emulator.set_faults({"kind": "ssh_eof", "target": "next_create", "seconds": 2})
    instance_id = _create(emulator, _offer(emulator)["id"], runtype="ssh").json()["new_contract"]
    try:
        row = emulator.wait_status(instance_id, "running")
        assert row["ports"] == {}  # runtype ssh: proxy only
        with socket.create_connection((row["ssh_host"], row["ssh_port"]), timeout=2) as sock:
            sock.settimeout(2)
            assert sock.recv(100).startswith(b"SSH-2.0-") and sock.recv(100) == b""  # banner, then EOF
        with pytest.raises((EOFError, paramiko.SSHException)):
            _login(row["ssh_host"], row["ssh_port"], ssh_keypair.private_key)
        client = connect_ssh(row, ssh_keypair.private_key, timeout=15)  # works once the fault's seconds pass
        assert ssh_run(client, "hostname")[1].strip() == f"C.{instance_id}"
        client.close()
    finally:
        emulator.destroy(instance_id)
