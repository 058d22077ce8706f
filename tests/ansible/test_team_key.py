"""A team API key cannot register account SSH keys: vast_ssh_key says so and attaches the key to the instance."""

from __future__ import annotations

import json

import yaml

from vast_emulator.testing import make_ssh_keypair


def _module(ansible, env, args: dict):
    run = ansible.run("ansible", "localhost", "-m", "universal_simulator.vastai.vast_ssh_key",
                      "-a", json.dumps(args), env=env)
    body = run.out.split("=>", 1)[1] if "=>" in run.out else "{}"  # the result, as the yaml callback prints it
    return run, yaml.safe_load(body.split("\n[WARNING]", 1)[0]) or {}


def test_a_team_key_registers_nothing_warns_and_attaches_to_the_instance(ansible, emulator, tmp_path):
    team = {"VAST_API_KEY": emulator.team_key()}
    extra = make_ssh_keypair(tmp_path / "team")
    run, result = _module(ansible, team, {"public_key_file": f"{extra.private_key}.pub"})
    assert run.rc == 0, run.out
    assert result["team_key"] is True and result["registered"] is False and not result["changed"]
    assert "team_ssh_keys_not_supported" in run.out
    instance_id = emulator.launch(label="ctl-team-key")
    emulator.wait_status(instance_id)
    run, result = _module(ansible, team, {"public_key_file": f"{extra.private_key}.pub",
                                          "private_key_file": str(extra.private_key), "instance_id": instance_id})
    assert run.rc == 0 and result["attached"] is True, run.out
    attached = emulator.api("GET", f"/api/v0/instances/{instance_id}/ssh/").json()["ssh_keys"]
    assert extra.public_key.split()[1] in {k["key"].split()[1] for k in attached}



def test_a_launch_with_a_team_key_gets_in_with_its_own_launch_key(ansible, emulator, tmp_path):
    """No account key can be registered with a team key: launch attaches the launch key to each new instance
    (only then: with a personal key the account decides), so the SSH readiness check (a real login) passes."""
    launch_key = make_ssh_keypair(tmp_path / "launch")  # registered nowhere before this launch
    run = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "provision=false", "-e", "run_name=ctl-team-run",
                           "-e", f"ssh_key_file={launch_key.private_key}", env={"VAST_API_KEY": emulator.team_key()})
    assert run.rc == 0, run.out[-3000:]
    rows = [r for r in emulator.state()["instances"] if r.get("label") == "ctl-team-run"]
    assert len(rows) == 1 and rows[0]["actual_status"] == "running"
    attached = emulator.api("GET", f"/api/v0/instances/{rows[0]['id']}/ssh/").json()["ssh_keys"]
    assert launch_key.public_key.split()[1] in {k["key"].split()[1] for k in attached}
    emulator.destroy(rows[0]["id"])
