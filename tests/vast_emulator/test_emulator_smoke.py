"""The emulator end to end in one pass: search, create, SSH in, destroy."""

from vast_emulator.testing import connect_ssh, ssh_run


def test_create_ssh_destroy(emulator, ssh_keypair):
    instance_id = emulator.launch(label="smoke", onstart="echo onstart-was-here > /workspace/mark")
    row = emulator.wait_status(instance_id, "running")
    client = connect_ssh(row, ssh_keypair.private_key)
    try:
        status, out, _ = ssh_run(client, "sleep 0.2; cat /workspace/mark; hostname; which python")
    finally:
        client.close()
    assert status == 0
    assert out.split() == ["onstart-was-here", f"C.{instance_id}", "/venv/main/bin/python"]
    emulator.destroy(instance_id)
    assert emulator.instance(instance_id) is None
