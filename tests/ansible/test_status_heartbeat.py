"""status.yml tells a live run from a dead one: the heartbeat's age on the instance's own clock, STALE past the
contract's limit, and the cost from the instance's age x $/h (a dead run's heartbeat has a frozen cost)."""

from __future__ import annotations

import json
import re

import run_contract as contract
from vast_emulator.testing import connect_ssh, ssh_run

CODE_DIR = contract.CODE_DIR


def _heartbeat(updated_epoch: float, cost: float) -> dict:
    return {"pid": 1, "run_name": "ctl-stale", "started_at": "2026-12-01T00:00:00+00:00",
            "updated_at": "2026-12-01T00:00:00+00:00", "updated_epoch": updated_epoch, "state": "running",
            "phase": "pipeline", "stage": "operator", "step": 5, "dph": 0.5, "cost_so_far": cost}


def _write(row: dict, key, text: str) -> None:
    client = connect_ssh(row, key)
    try:
        script = (f"mkdir -p {CODE_DIR} && printf '%s' '{text}' > {CODE_DIR}/{contract.HEARTBEAT_FILE} && "
                  "date +%s")
        status, out, err = ssh_run(client, script)
        assert status == 0, err
    finally:
        client.close()


def _clock(row: dict, key) -> float:
    client = connect_ssh(row, key)
    try:
        return float(ssh_run(client, "date +%s")[1])
    finally:
        client.close()


def test_a_stale_heartbeat_is_flagged_and_the_cost_is_live(ansible, emulator, ssh_keypair):
    row = emulator.wait_status(emulator.launch(label="ctl-stale"), "running")
    key = ssh_keypair.private_key
    frozen = 0.0001  # what a dead supervisor last wrote
    _write(row, key, json.dumps(_heartbeat(_clock(row, key) - 3600, frozen)))
    out = ansible.playbook("playbooks/status.yml", "-e", "run=ctl-stale").out
    assert re.search(r"heartbeat: 36\d\d s old - STALE", out), out
    assert "cost so far ~$0.0001" not in out  # the instance's age x $/h, not the frozen figure

    # Fresh: written now, on the instance's clock (the first playbook took a while on a loaded machine).
    _write(row, key, json.dumps(_heartbeat(_clock(row, key), frozen)))
    fresh = ansible.playbook("playbooks/status.yml", "-e", "run=ctl-stale").out
    assert re.search(r"heartbeat: \d+ s old", fresh) and "STALE" not in fresh, fresh
