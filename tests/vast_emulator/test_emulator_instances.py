"""Instances are real hosts: SSH with paramiko, private /workspace, /tmp, /root, environment, lifecycle, cleanup."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from vast_emulator import runtime
from vast_emulator.testing import (
    connect_ssh,
    leftover_loop_devices,
    leftover_mounts,
    running_emulator,
    ssh_run,
    stray_processes,
)


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
                ssh_run(client, "touch /tmp/only-$(hostname) && tmux new-session -d -s t 'sleep 300'")
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
            assert only == f"only-C.{instance_id}"  # each /tmp is private
            assert sessions == "1"  # each has its own tmux server (socket under its own /tmp)
            assert hostname == f"C.{instance_id}"
            assert ssh_files == ["authorized_keys"]  # not the host's ~/.ssh, and no session environment file
    finally:
        for instance_id in ids:
            emulator.destroy(instance_id)


ONSTART_PROBE = (
    "env | cut -d= -f1 | sort > /root/onstart-env-names; "
    'test -n "$CONTAINER_API_KEY" && test -n "$B2_SENTINEL_KEY" && touch /root/onstart-saw-key'
)


def test_container_env_reaches_pid1_and_onstart_but_never_ssh_sessions(tmp_path, ssh_keypair, monkeypatch):
    # sshd runs with PID 1's environment, as on Vast; what it must show is that it builds sessions a fresh one.
    # (Its own /proc/<pid>/environ cannot tell: its process title overwrites that memory.)
    # The host's network settings pass through to sessions (SetEnv); the account's never do, whatever the name.
    monkeypatch.setenv("NO_PROXY", "sentinel.invalid,127.0.0.1")
    with running_emulator(tmp_path / "state") as emu:
        emu.register_ssh_key(ssh_keypair.public_key)
        for key, value in (("B2_SENTINEL_KEY", "b2-secret-sentinel"), ("UV_EXTRA_INDEX_URL", "https://tok@private.invalid")):
            emu.api("POST", "/api/v0/secrets/", json={"key": key, "value": value})
        env = {"RUN_NAME": "burgers", "-p 8080:8080": "1", "-h": "myhost"}
        instance_id = emu.launch(env=env, onstart=ONSTART_PROBE)
        client = connect_ssh(emu.wait_status(instance_id), ssh_keypair.private_key)
        try:
            # Ansible runs "/bin/sh -c ..." over a non-interactive, non-login session.
            status, out, _ = ssh_run(client, "/bin/sh -c 'env'")
            session = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            key_rc, key_out, _ = ssh_run(client, "printenv CONTAINER_API_KEY")
            _, python, _ = ssh_run(client, "/bin/sh -c 'command -v python'")
            _, pid1, _ = ssh_run(client, "tr '\\0' '\\n' < /proc/1/environ")
            deadline = time.monotonic() + 5
            while ssh_run(client, "test -e /root/onstart-env-names")[0] != 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            saw_key, _, _ = ssh_run(client, "test -e /root/onstart-saw-key")
            _, onstart_names, _ = ssh_run(client, "cat /root/onstart-env-names")
            _, etc_env, _ = ssh_run(client, "cat /etc/environment 2>/dev/null || true")
            _, files, _ = ssh_run(client, "ls -A /root/.ssh")
        finally:
            client.close()
            emu.destroy(instance_id)
    assert status == 0
    assert key_rc == 1 and key_out == ""  # printenv: not set
    for name in ("CONTAINER_API_KEY", "CONTAINER_ID", "VAST_CONTAINERLABEL", "VAST_URL", "B2_SENTINEL_KEY",
                 "UV_EXTRA_INDEX_URL", "RUN_NAME", "SSH_PUBLIC_KEY"):
        assert name not in session, name
    assert "b2-secret-sentinel" not in out and "private.invalid" not in out
    assert session["NO_PROXY"] == "sentinel.invalid,127.0.0.1"  # the machine's network reaches sessions
    assert session["HOME"] == "/root" and session["USER"] == "root"
    assert python.strip() == "/venv/main/bin/python"  # ~/.bashrc, as in the vastai/pytorch image
    assert "b2-secret-sentinel" not in etc_env and files.split() == ["authorized_keys"]

    container = dict(line.split("=", 1) for line in pid1.splitlines() if "=" in line)
    assert container["CONTAINER_ID"] == str(instance_id) and len(container["CONTAINER_API_KEY"]) == 64
    assert container["B2_SENTINEL_KEY"] == "b2-secret-sentinel" and container["RUN_NAME"] == "burgers"
    assert container["VAST_CONTAINERLABEL"] == f"C.{instance_id}" and container["GPU_COUNT"] == "1"
    assert container["PYTORCH_VERSION"] == "2.13.0" and container["SSH_PUBLIC_KEY"].startswith("ssh-ed25519 ")
    assert container["PATH"].startswith("/venv/main/bin:") and container["NO_PROXY"] == "sentinel.invalid,127.0.0.1"
    assert not any(k.startswith("-") for k in container)  # docker flags are not environment entries

    assert saw_key == 0  # onstart saw the key and the account env-var
    names = onstart_names.split()
    assert {"CONTAINER_API_KEY", "CONTAINER_ID", "B2_SENTINEL_KEY", "RUN_NAME", "VAST_URL", "NO_PROXY"} <= set(names)


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
    start_date = emulator.instance(instance_id)["start_date"]
    instance_dir = Path(emulator.state()["instances"][0]["_emulator"]["dir"]).parent / str(instance_id)
    client = connect_ssh(emulator.wait_status(instance_id), ssh_keypair.private_key)
    try:
        ssh_run(client, "echo keep > /workspace/data.txt; nohup sleep 900 >/dev/null 2>&1 &")
    finally:
        client.close()
    ours = [p for p in stray_processes(emulator.state_dir) if str(instance_id) in Path(f"/proc/{p}/environ").read_text(errors="replace")]
    assert ours, "the instance's processes carry the emulator's marker"

    emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "stopped"})
    row = emulator.instance(instance_id)
    assert [row[k] for k in ("actual_status", "intended_status", "cur_state", "next_state")] == ["stopped"] * 4
    assert not [p for p in ours if Path(f"/proc/{p}").exists()], "stop ends every process of the instance"

    emulator.api("PUT", f"/api/v0/instances/{instance_id}/", json={"state": "running"})
    row = emulator.wait_status(instance_id)
    assert [row[k] for k in ("intended_status", "cur_state", "next_state")] == ["running"] * 3
    client = connect_ssh(row, ssh_keypair.private_key)
    try:
        _, out, _ = ssh_run(client, "cat /workspace/data.txt; sleep 0.3; wc -l < /workspace/boots")
    finally:
        client.close()
    assert out.split() == ["keep", "2"]  # disk kept; onstart ran once per start
    assert emulator.instance(instance_id)["start_date"] == start_date  # a start is not a new rental

    emulator.destroy(instance_id)
    assert not instance_dir.exists()
    remaining = [p for p in stray_processes(emulator.state_dir) if str(instance_id) in Path(f"/proc/{p}/environ").read_text(errors="replace")]
    assert remaining == []
    assert leftover_mounts(emulator.state_dir) == []
    assert leftover_loop_devices(instance_dir) == []  # the disk's loop device went with the namespace


def test_container_api_key_destroys_itself_and_nothing_else(emulator, ssh_keypair):
    ids = _launch_two(emulator, gpu_name="RTX 4090")
    own, other = ids
    # SSH sessions have no CONTAINER_API_KEY (as on Vast): the script takes the container's env from PID 1.
    script = (
        "import json, urllib.request, urllib.error\n"
        "env = dict(kv.split('=', 1) for kv in open('/proc/1/environ').read().split('\\0') if '=' in kv)\n"
        "import time\n"
        "def call(method, path, body=None):\n"
        "    req = urllib.request.Request(env['VAST_URL'] + path, method=method,\n"
        "        data=json.dumps(body or {}).encode() if method != 'GET' else None,\n"
        "        headers={'Authorization': 'Bearer ' + env['CONTAINER_API_KEY'], 'Content-Type': 'application/json'})\n"
        "    for _ in range(50):\n"
        "        try:\n"
        "            with urllib.request.urlopen(req) as r: return r.status, json.loads(r.read())\n"
        "        except urllib.error.HTTPError as e:\n"
        "            if e.code != 429: return e.code, json.loads(e.read())\n"
        "            time.sleep(0.5)  # the instance key is rate-limited too\n"
        f"me, other = env['CONTAINER_ID'], '{other}'\n"
        "out = {\n"
        "  'show_other': call('GET', f'/api/v0/instances/{other}/?owner=me'),\n"
        "  'destroy_other': call('DELETE', f'/api/v0/instances/{other}/'),\n"
        "  'secrets': call('GET', '/api/v0/secrets/'),\n"
        "  'create': call('PUT', '/api/v0/asks/10000101/', {'image': 'x', 'disk': 10}),\n"
        "  'label_me': call('PUT', f'/api/v0/instances/{me}/', {'label': 'self-labelled'}),\n"
        "  'show_me': call('GET', f'/api/v0/instances/{me}/?owner=me'),\n"
        "}\n"
        "print(json.dumps(out))\n"
        "if 'destroy' in __import__('sys').argv: call('DELETE', f'/api/v0/instances/{me}/')\n"
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
            ssh_run(client, "python /root/scope.py destroy >/dev/null 2>&1 &", timeout=10)
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


def test_sshd_setenv_takes_network_names_only_and_keeps_values_intact(tmp_path):
    network = {"NO_PROXY": "a b", "PIP_INDEX_URL": 'x"y\\z', "UV_INDEX": "#h", "B2_APPLICATION_KEY": "secret"}
    config = runtime.SSHD_CONFIG.format(instance_id=1, port=2222, set_env=runtime.sshd_set_env(network))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")], check=True)
    (tmp_path / "sshd_config").write_text(config.replace("/etc/ssh/ssh_host_ed25519_key", str(tmp_path / "hk")))
    parsed = subprocess.run([runtime.SSHD, "-T", "-f", str(tmp_path / "sshd_config")], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    setenv = [line.split(" ", 1)[1] for line in parsed.stdout.splitlines() if line.startswith("setenv ")]
    assert sorted(setenv) == ["NO_PROXY=a b", 'PIP_INDEX_URL=x"y\\z', "UV_INDEX=#h"]
    assert "permituserenvironment no" in parsed.stdout
