"""The emulator as a process: restart persistence, clean shutdown, startup errors, the api_key file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from vast_emulator.testing import (
    connect_ssh,
    leftover_loop_devices,
    leftover_mounts,
    ssh_run,
    start_emulator,
    stray_processes,
)


def test_state_survives_a_restart_and_shutdown_leaves_nothing(tmp_path, ssh_keypair):
    state = tmp_path / "state"
    emu = start_emulator(state, api_key="restart-test-key")
    try:
        emu.register_ssh_key(ssh_keypair.public_key)
        emu.api("POST", "/api/v0/secrets/", json={"key": "KEPT", "value": "yes"})
        running_id = emu.launch(label="keeps-running", onstart="echo boot >> /workspace/boots")
        stopped_id = emu.launch(gpu_name="RTX 3090", label="stays-stopped")
        client = connect_ssh(emu.wait_status(running_id), ssh_keypair.private_key)
        ssh_run(client, "echo precious > /workspace/data.txt; nohup sleep 900 >/dev/null 2>&1 &")
        client.close()
        emu.wait_status(stopped_id)
        emu.api("PUT", f"/api/v0/instances/{stopped_id}/", json={"state": "stopped"})
        assert stray_processes(state)
    finally:
        strays = emu.stop()
    assert strays == []  # SIGTERM ended every instance process
    assert leftover_mounts(state) == [] and leftover_loop_devices(state) == []

    emu = start_emulator(state, api_key="restart-test-key")
    try:
        row = emu.wait_status(running_id, "running", timeout=20)
        assert row["label"] == "keeps-running"
        assert emu.instance(stopped_id)["actual_status"] == "stopped"
        assert emu.secrets()["KEPT"] == "yes"
        client = connect_ssh(row, ssh_keypair.private_key)
        # Account env-vars reach the container (PID 1), not SSH sessions.
        command = "cat /workspace/data.txt; sleep 0.3; wc -l < /workspace/boots; tr '\\0' '\\n' < /proc/1/environ | grep ^KEPT="
        _, out, _ = ssh_run(client, command)
        client.close()
        assert out.split() == ["precious", "2", "KEPT=yes"]
        assert emu.instance(running_id)["id"] == running_id
        next_id = emu.launch(gpu_name="L40S")
        assert next_id > max(running_id, stopped_id)  # ids are never reused
    finally:
        strays = emu.stop()
    assert strays == []


def test_api_key_is_generated_once_into_a_private_file(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "VAST_EMULATOR_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vast_emulator", "--port", "0", "--state-dir", str(state)],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("vast_emulator listening on http://127.0.0.1:")
        assert (state / "url").read_text().strip() == line.rsplit(" ", 1)[1]
        key_file = state / "api_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_text().strip()) == 64
        assert key_file.read_text().strip() not in Path(f"/proc/{proc.pid}/cmdline").read_text().replace("\0", " ")
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    assert "vast_emulator stopped" in proc.stdout.read()


def test_missing_tools_are_named_with_the_install_command(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no unshare, no ssh-keygen on PATH
    result = subprocess.run(
        [sys.executable, "-m", "vast_emulator", "--state-dir", str(tmp_path / "s")],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unshare" in lines[0] and "apt-get install" in lines[0]


def test_restart_after_a_crash_reaps_orphaned_instance_processes(tmp_path):
    state = tmp_path / "state"
    emu = start_emulator(state, api_key="crash-test-key")
    instance_id = emu.launch(gpu_name="RTX 3090")
    emu.wait_status(instance_id)
    emu.process.kill()  # no cleanup at all: the instance's namespace outlives its emulator
    emu.process.wait(timeout=10)
    orphans = stray_processes(state)
    assert orphans

    emu = start_emulator(state, api_key="crash-test-key")
    try:
        emu.wait_status(instance_id, timeout=20)
        assert not set(orphans) & set(stray_processes(state))
    finally:
        assert emu.stop() == []
