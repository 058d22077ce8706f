"""Instances are real hosts: SSH with paramiko, private /workspace, /tmp, /root, environment, lifecycle, cleanup."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from vast_emulator.testing import connect_ssh, leftover_mounts, ssh_run, stray_processes


def _launch_two(emulator, **body):
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(emulator.launch(**body))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def test_two_concurrent_instances_are_separate_hosts(emulator, ssh_keypair):
    ids = _launch_two(emulator, label="iso", onstart="echo $CONTAINER_ID > /workspace/who")
    try:
        outputs = {}
        for instance_id in ids:
            client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
            try:
                ssh_run(client, "touch /tmp/only-$CONTAINER_ID && tmux new-session -d -s t 'sleep 300'")
                status, out, err = ssh_run(
                    client, "cat /workspace/who; ls /tmp | grep only-; tmux ls | wc -l; hostname; ls -A /root/.ssh"
                )
                hidden, _, _ = ssh_run(client, f"ls {emulator.state_dir}/instances")
                assert hidden != 0, "the emulator's state dir is not visible inside an instance"
                assert status == 0, err
                outputs[instance_id] = out.split()
            finally:
                client.close()
        for instance_id in ids:
            who, only, sessions, hostname, *ssh_files = outputs[instance_id]
            assert who == str(instance_id)
            assert only == f"only-{instance_id}"  # each /tmp is private
            assert sessions == "1"  # each has its own tmux server (socket under its own /tmp)
            assert hostname == f"C.{instance_id}"
            assert sorted(ssh_files) == ["authorized_keys", "environment"]  # not the host's ~/.ssh
    finally:
        for instance_id in ids:
            emulator.destroy(instance_id)


def test_environment_in_non_interactive_sessions_and_etc_environment(emulator, ssh_keypair):
    emulator.api("POST", "/api/v0/secrets/", json={"key": "ACCOUNT_TOKEN", "value": "acct-value"})
    env = {"RUN_NAME": "burgers", "-p 8080:8080": "1", "-h": "myhost"}
    instance_id = emulator.launch(gpu_name="RTX 3090", env=env)
    try:
        row = emulator.wait_status(instance_id)
        client = connect_ssh(row, ssh_keypair.private_key)
        try:
            # Ansible runs "/bin/sh -c ..." over a non-interactive, non-login session.
            status, out, _ = ssh_run(client, "/bin/sh -c 'env'")
            seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            status2, python, _ = ssh_run(client, "/bin/sh -c 'command -v python; python -c \"import torch; print(torch.__version__)\"'")
            _, etc_env, _ = ssh_run(client, "cat /etc/environment")
        finally:
            client.close()
    finally:
        emulator.api("DELETE", "/api/v0/secrets/", json={"key": "ACCOUNT_TOKEN"})
        emulator.destroy(instance_id)
    assert status == status2 == 0
    assert seen["CONTAINER_ID"] == str(instance_id)
    assert seen["VAST_CONTAINERLABEL"] == f"C.{instance_id}"
    assert seen["PUBLIC_IPADDR"] == "127.0.0.1"
    assert seen["VAST_TCP_PORT_22"] == row["ports"]["22/tcp"][0]["HostPort"]
    assert seen["GPU_COUNT"] == "1" and seen["DATA_DIRECTORY"] == seen["WORKSPACE"] == "/workspace"
    assert seen["PYTORCH_VERSION"] == "2.13.0"
    assert len(seen["CONTAINER_API_KEY"]) == 64
    assert seen["SSH_PUBLIC_KEY"].startswith("ssh-ed25519 ")
    assert seen["ACCOUNT_TOKEN"] == "acct-value" and seen["RUN_NAME"] == "burgers"
    assert not any(k.startswith("-") for k in seen)  # docker flags are not environment entries
    assert python.split() == ["/venv/main/bin/python", "2.13.0+cpu"]
    assert 'RUN_NAME="burgers"' in etc_env and f'CONTAINER_ID="{instance_id}"' in etc_env


def test_venv_writes_stay_private_to_the_instance(emulator, ssh_keypair):
    ids = _launch_two(emulator, gpu_name="RTX 3090")
    try:
        first, second = (connect_ssh(emulator.wait_status(i), ssh_keypair.private_key) for i in ids)
        try:
            ssh_run(first, "echo mine > /venv/main/lib/marker.txt")
            _, out_first, _ = ssh_run(first, "cat /venv/main/lib/marker.txt")
            status, _, _ = ssh_run(second, "test -e /venv/main/lib/marker.txt")
        finally:
            first.close()
            second.close()
    finally:
        for instance_id in ids:
            emulator.destroy(instance_id)
    assert out_first.strip() == "mine" and status == 1


def test_stop_keeps_disk_start_reruns_onstart_destroy_removes_everything(emulator, ssh_keypair):
    instance_id = emulator.launch(onstart="date +%s%N >> /workspace/boots; sleep 600")
    instance_dir = Path(emulator.state()["instances"][0]["_emulator"]["dir"]).parent / str(instance_id)
    client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
    try:
        ssh_run(client, "echo keep > /workspace/data.txt; nohup sleep 900 >/dev/null 2>&1 &")
    finally:
        client.close()
    ours = [p for p in stray_processes(emulator.state_dir) if str(instance_id) in Path(f"/proc/{p}/environ").read_text(errors="replace")]
    assert ours, "the instance's processes carry the emulator's marker"

    emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "stopped"})
    assert emulator.instance(instance_id)["actual_status"] == "stopped"
    assert not [p for p in ours if Path(f"/proc/{p}").exists()], "stop ends every process of the instance"

    emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "running"})
    client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
    try:
        _, out, _ = ssh_run(client, "cat /workspace/data.txt; sleep 0.3; wc -l < /workspace/boots")
    finally:
        client.close()
    assert out.split() == ["keep", "2"]  # disk kept; onstart ran once per start

    emulator.destroy(instance_id)
    assert not instance_dir.exists()
    remaining = [p for p in stray_processes(emulator.state_dir) if str(instance_id) in Path(f"/proc/{p}/environ").read_text(errors="replace")]
    assert remaining == []
    assert leftover_mounts(emulator.state_dir) == []


def test_container_api_key_destroys_itself_and_nothing_else(emulator, ssh_keypair):
    ids = _launch_two(emulator, gpu_name="RTX 4090")
    own, other = ids
    script = (
        "import json, os, urllib.request, urllib.error\n"
        "def call(method, path, body=None):\n"
        "    req = urllib.request.Request(os.environ['VAST_URL'] + path, method=method,\n"
        "        data=json.dumps(body or {}).encode() if method != 'GET' else None,\n"
        "        headers={'Authorization': 'Bearer ' + os.environ['CONTAINER_API_KEY'], 'Content-Type': 'application/json'})\n"
        "    try:\n"
        "        with urllib.request.urlopen(req) as r: return r.status, json.loads(r.read())\n"
        "    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())\n"
        f"me, other = os.environ['CONTAINER_ID'], '{other}'\n"
        "out = {\n"
        "  'show_other': call('GET', f'/api/v0/instances/{other}/?owner=me'),\n"
        "  'destroy_other': call('DELETE', f'/api/v0/instances/{other}/'),\n"
        "  'secrets': call('GET', '/api/v0/secrets/'),\n"
        "  'create': call('PUT', '/api/v0/asks/10000101/', {'image': 'x', 'disk': 10}),\n"
        "  'label_me': call('PUT', f'/api/v0/instances/{me}/', {'label': 'self-labelled'}),\n"
        "  'show_me': call('GET', f'/api/v0/instances/{me}/?owner=me'),\n"
        "}\n"
        "print(json.dumps(out))\n"
    )
    try:
        client = connect_ssh(emulator.wait_status(own), ssh_keypair.private_key)
        try:
            sftp = client.open_sftp()
            with sftp.file("/root/scope.py", "w") as handle:
                handle.write(script)
            sftp.close()
            status, out, err = ssh_run(client, "python /root/scope.py")
            assert status == 0, err
            result = json.loads(out)
            # Now it destroys itself from inside, as the on-instance supervisor will.
            ssh_run(client, "python -c \"import os, urllib.request as u; u.urlopen(u.Request(os.environ['VAST_URL'] + "
                            "'/api/v0/instances/' + os.environ['CONTAINER_ID'] + '/', method='DELETE', data=b'{}', headers="
                            "{'Authorization': 'Bearer ' + os.environ['CONTAINER_API_KEY']}))\" &", timeout=10)
        except OSError:
            pass  # the session may die with the instance
        finally:
            client.close()
        for name in ("show_other", "destroy_other", "secrets", "create"):
            code, body = result[name]
            assert code == 403 and body["success"] is False and body["error"] == "permission_denied", name
        assert result["label_me"][0] == 200
        assert result["show_me"][1]["instances"]["label"] == "self-labelled"
        assert emulator.instance(other)["actual_status"] == "running"
        _wait_gone(emulator, own)
        # The request is logged once its response is written, which can trail the state change under load.
        deadline = time.monotonic() + 15
        while True:
            deletes = [e for e in emulator.requests()
                       if e["method"] == "DELETE" and e["path"] == f"/api/v0/instances/{own}/"]
            if deletes or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert deletes, "the self-destroy request reached the emulator"
        assert deletes[-1]["caller"] == f"instance:{own}" and deletes[-1]["status"] == 200
    finally:
        for instance_id in ids:
            if emulator.instance(instance_id):
                emulator.destroy(instance_id)


def _wait_gone(emulator, instance_id, timeout=15.0):
    import time

    deadline = time.monotonic() + timeout
    while emulator.instance(instance_id) is not None:
        assert time.monotonic() < deadline, f"instance {instance_id} did not destroy itself"
        time.sleep(0.1)
