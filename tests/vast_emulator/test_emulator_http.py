"""Raw-HTTP conformance with vast-api.md: auth, content type, error shapes, validation, secrets, ssh keys, logs."""

from __future__ import annotations

import time

import pytest
import requests

AUTH_ERROR = {"success": False, "error": "auth_error", "msg": "Invalid user key"}


def test_bearer_and_legacy_query_key_authenticate(emulator):
    by_header = requests.get(f"{emulator.url}/api/v0/users/current", headers={"Authorization": f"Bearer {emulator.api_key}"})
    by_query = requests.get(f"{emulator.url}/api/v0/users/current/?api_key={emulator.api_key}")
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json()["username"] == by_query.json()["username"] == "emulator"


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer not-the-key"}, {}])
def test_wrong_or_missing_key_is_401_with_the_real_body(emulator, headers):
    response = requests.get(f"{emulator.url}/api/v1/instances/", headers=headers)
    assert response.status_code == 401
    assert response.json() == AUTH_ERROR
    assert response.headers["Content-Type"] == "application/json"


def test_json_content_type_is_exact_and_gpu_names_need_no_key(emulator):
    response = requests.get(f"{emulator.url}/api/v0/gpu_names/unique/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"  # the CLI rejects "; charset=utf-8"
    assert "RTX 4090" in response.json()["gpu_names"]


def test_path_prefix_before_api_is_ignored(emulator):
    response = emulator.http.get(f"{emulator.url}/some/prefix/api/v0/users/current", headers={"Authorization": f"Bearer {emulator.api_key}"})
    assert response.status_code == 200


def test_unknown_endpoint_is_a_json_404(emulator):
    response = emulator.api("GET", "/api/v0/no/such/thing/")
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_admin_endpoints_need_the_account_key(emulator):
    assert requests.get(f"{emulator.url}/_emulator/state").status_code == 401
    assert emulator.api("GET", "/_emulator/state").status_code == 200


def test_request_log_records_calls_but_never_keys(emulator):
    emulator.http.get(f"{emulator.url}/api/v0/users/current?api_key={emulator.api_key}")
    log = emulator.requests()
    last = [e for e in log if e["path"].startswith("/api/v0/users/current")][-1]
    assert last["method"] == "GET" and last["status"] == 200 and last["caller"] == "account"
    assert isinstance(last["time"], float)
    assert emulator.api_key not in str(log)


@pytest.mark.parametrize(
    ("body_change", "needle"),
    [
        ({"label": "x" * 257}, "label"),
        ({"disk": 4.0}, "disk"),
        ({"onstart": "x" * 4097}, "onstart"),
        ({"env": {"BIG": "v" * 257}}, "BIG"),
        ({"price": 500.0}, "price"),
    ],
)
def test_create_rejects_bad_input_with_400(emulator, body_change, needle):
    offer = emulator.search({"gpu_name": {"eq": "RTX 3090"}})[0]
    body = {"image": "vastai/pytorch", "disk": 16.0, **body_change}
    response = emulator.api("PUT", f"/api/v0/asks/{offer['id']}/", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["error"] in ("invalid_args", "invalid_price")
    assert needle in payload["msg"]
    assert offer["id"] in [o["id"] for o in emulator.search({"gpu_name": {"eq": "RTX 3090"}})]  # nothing was rented


def test_unknown_offer_is_404_no_such_ask_and_410_with_cancel_unavail(emulator):
    response = emulator.api("PUT", "/api/v0/asks/999/", json={"image": "x", "disk": 10})
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_args"
    assert "no_such_ask" in response.json()["msg"] and response.json()["ask_id"] == 999
    gone = emulator.api("PUT", "/api/v0/asks/999/", json={"image": "x", "disk": 10, "cancel_unavail": True})
    assert gone.status_code == 410 and gone.json()["error"] == "no_such_ask"


def test_unknown_instance_shapes(emulator):
    assert emulator.api("GET", "/api/v0/instances/123/?owner=me").json() == {"instances": None}
    # Destroying what is gone answers 200 with success false (what clients meet; the docs say 404).
    gone = emulator.api("DELETE", "/api/v0/instances/123/")
    assert gone.status_code == 200 and gone.json()["success"] is False and gone.json()["error"] == "no_such_instance"
    for method, path, body in [
        ("PUT", "/api/v0/instances/123/", {"state": "stopped"}),
        ("PUT", "/api/v0/instances/request_logs/123/", {}),
    ]:
        response = emulator.api(method, path, json=body)
        assert response.status_code == 404, path
        assert response.json()["error"] == "no_such_instance"


def test_env_vars_crud_and_errors(emulator):
    assert emulator.api("POST", "/api/v0/secrets/", json={"key": "HTTP_T_VAR", "value": "one"}).json()["success"]
    duplicate = emulator.api("POST", "/api/v0/secrets/", json={"key": "HTTP_T_VAR", "value": "two"})
    assert duplicate.status_code == 400 and duplicate.json()["error"] == "existing_key"
    assert emulator.api("POST", "/api/v0/secrets/", json={"key": "ONLY_KEY"}).json()["error"] == "missing_input"
    assert emulator.api("PUT", "/api/v0/secrets/", json={"key": "HTTP_T_VAR", "value": "two"}).json()["success"]
    assert emulator.api("GET", "/api/v0/secrets/").json()["secrets"]["HTTP_T_VAR"] == "********"  # masked, as Vast
    assert emulator.secrets()["HTTP_T_VAR"] == "two"
    assert emulator.api("PUT", "/api/v0/secrets/", json={"key": "NOPE_X", "value": "v"}).json()["error"] == "nonexistent_key"
    assert emulator.api("DELETE", "/api/v0/secrets/", json={"key": "HTTP_T_VAR"}).json()["success"]
    assert "HTTP_T_VAR" not in emulator.api("GET", "/api/v0/secrets/").json()["secrets"]
    assert emulator.api("DELETE", "/api/v0/secrets/", json={"key": "HTTP_T_VAR"}).json()["error"] == "nonexistent_key"


def test_ssh_keys_crud_and_errors(emulator):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForHttpTest tester@host"
    created = emulator.api("POST", "/api/v0/ssh/", json={"ssh_key": key}).json()
    assert created["success"] and created["key"]["public_key"] == key
    listed = emulator.api("GET", "/api/v0/ssh/").json()
    assert isinstance(listed, list) and key in [k["key"] for k in listed]
    assert emulator.api("POST", "/api/v0/ssh/", json={}).json()["error"] == "no_ssh_key"
    assert emulator.api("DELETE", f"/api/v0/ssh/{created['key']['id']}/").json()["success"]
    assert key not in [k["key"] for k in emulator.api("GET", "/api/v0/ssh/").json()]


def test_logs_result_url_is_unauthenticated_404_once_then_the_onstart_output(emulator):
    instance_id = emulator.launch(gpu_name="RTX 3090", onstart="echo line-one; echo line-two")
    try:
        emulator.wait_status(instance_id)
        deadline = time.monotonic() + 10
        while True:
            url = emulator.api("PUT", f"/api/v0/instances/request_logs/{instance_id}/", json={"tail": "1"}).json()["result_url"]
            first, second = requests.get(url), requests.get(url)
            if "line-two" in second.text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert first.status_code == 404
        assert second.status_code == 200 and second.text.strip() == "line-two"
    finally:
        emulator.destroy(instance_id)


def test_label_and_state_changes_validate(emulator):
    instance_id = emulator.launch(gpu_name="RTX 3090")
    try:
        too_long = emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"label": "y" * 257})
        assert too_long.status_code == 400 and too_long.json()["error"] == "label_too_long"
        bad_state = emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "paused"})
        assert bad_state.status_code == 400
        assert emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"label": "renamed"}).json()["success"]
        assert emulator.instance(instance_id)["label"] == "renamed"
    finally:
        emulator.destroy(instance_id)


def test_reboot_restarts_processes_and_reruns_onstart(emulator, ssh_keypair):
    from vast_emulator.testing import connect_ssh, ssh_run

    instance_id = emulator.launch(gpu_name="RTX 3090", onstart="echo boot >> /workspace/boots")
    try:
        emulator.wait_status(instance_id)
        assert emulator.api("PUT", f"/api/v0/instances/reboot/{instance_id}/").json()["success"]
        client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
        deadline = time.monotonic() + 5
        while ssh_run(client, "wc -l < /workspace/boots")[1].strip() != "2" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ssh_run(client, "wc -l < /workspace/boots")[1].strip() == "2"
        client.close()
    finally:
        emulator.destroy(instance_id)
