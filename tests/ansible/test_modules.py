"""The vast_* modules through `ansible localhost -m ...` against the emulator, plus docs and lint."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from ctl_support import creates_since, instances, last_seq

from vast_emulator.testing import make_ssh_keypair

MODULES = ("vast_offer_info", "vast_instance", "vast_instance_info", "vast_env_var", "vast_env_var_info",
           "vast_ssh_key")


def module(ansible, name: str, args: dict, *flags: str):
    """Run one module on localhost through a one-task playbook; returns (rc, result dict, output)."""
    workdir = Path(tempfile.mkdtemp(prefix="ctl-module-"))
    result_file = workdir / "result.json"
    playbook = workdir / "call.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Call one module", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": f"Run {name}", name: args, "register": "out", "ignore_errors": True},
            {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ out | to_json }}",
                                                                "dest": str(result_file), "mode": "0600"},
             "check_mode": False},
        ],
    }]))
    run = ansible.run("ansible-playbook", str(playbook), *flags)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return (1 if result.get("failed") or run.rc else 0), result, run.out


def test_every_module_and_the_inventory_plugin_render_their_docs(ansible):
    for name in MODULES:
        doc = ansible.run("ansible-doc", "-M", "library", name)
        assert doc.rc == 0 and "api_key" in doc.out and "EXAMPLES" in doc.out and "RETURN VALUES" in doc.out, doc.out
    plugin = ansible.run("ansible-doc", "-t", "inventory", "vast")
    assert plugin.rc == 0 and "keyed_groups" in plugin.out and "known_hosts_dir" in plugin.out, plugin.out


def test_env_var_is_idempotent_and_never_returns_values(ansible, emulator):
    secret = "hush-9c41e2d0"
    rc, first, out = module(ansible, "vast_env_var", {"name": "CTL_TOKEN", "value": secret})
    assert rc == 0 and first["changed"] and first["outcomes"] == {"CTL_TOKEN": "created"}
    rc, again, out2 = module(ansible, "vast_env_var", {"name": "CTL_TOKEN", "value": secret})
    assert rc == 0 and not again["changed"] and again["unchanged"] == ["CTL_TOKEN"]
    rc, updated, out3 = module(ansible, "vast_env_var", {"name": "CTL_TOKEN", "value": secret + "x"}, "--check")
    assert rc == 0 and updated["changed"] and emulator.api("GET", "/api/v0/secrets/").json()["secrets"]["CTL_TOKEN"] == secret
    assert secret not in out + out2 + out3
    rc, names, _ = module(ansible, "vast_env_var_info", {"required": ["CTL_TOKEN", "CTL_MISSING"]})
    assert "CTL_TOKEN" in names["names"] and names["missing"] == ["CTL_MISSING"]
    rc, gone, _ = module(ansible, "vast_env_var", {"name": "CTL_TOKEN", "state": "absent"})
    assert rc == 0 and gone["outcomes"] == {"CTL_TOKEN": "deleted"}
    assert "CTL_TOKEN" not in emulator.api("GET", "/api/v0/secrets/").json()["secrets"]


def test_ssh_key_registers_once_and_attaches_only_when_refused(ansible, emulator, tmp_path):
    rc, created, _ = module(ansible, "vast_instance",
                            {"label": "ctl-key", "state": "running", "disk": 16, "min_reliability": 0.9,
                             "poll_interval": 0.5, "ssh_key_file": ansible.common_vars[1].split("=", 1)[1]})
    assert rc == 0, created
    instance_id = created["instance"]["id"]
    extra = make_ssh_keypair(tmp_path / "extra")
    args = {"public_key": extra.public_key, "instance_id": instance_id, "private_key_file": str(extra.private_key)}
    rc, first, _ = module(ansible, "vast_ssh_key", args)
    assert rc == 0 and first["registered"] and first["attached"] and first["changed"]
    rc, again, _ = module(ansible, "vast_ssh_key", args)
    assert rc == 0 and not again["changed"] and again["key_id"] == first["key_id"]
    rc, removed, _ = module(ansible, "vast_ssh_key", {"public_key": extra.public_key, "state": "absent"})
    assert rc == 0 and removed["changed"]
    rc, bad, out = module(ansible, "vast_ssh_key", {"public_key": "-----BEGIN OPENSSH PRIVATE KEY----- abc"})
    assert rc != 0 and "that is a private key" in out


def test_stopped_run_is_started_and_replaced_when_it_does_not_come_back(ansible, emulator):
    base = {"label": "ctl-restart", "disk": 16, "min_reliability": 0.9, "poll_interval": 0.5,
            "ssh_key_file": ansible.common_vars[1].split("=", 1)[1]}
    rc, created, _ = module(ansible, "vast_instance", {**base, "state": "running"})
    assert rc == 0, created
    first_id, first_machine = created["instance"]["id"], created["instance"]["machine_id"]
    rc, stopped, _ = module(ansible, "vast_instance", {**base, "state": "stopped"})
    assert rc == 0 and stopped["changed_ids"] == [first_id]
    assert emulator.instance(first_id)["actual_status"] == "stopped"

    rc, started, _ = module(ansible, "vast_instance", {**base, "state": "running"})
    assert rc == 0 and started["instance"]["id"] == first_id and started["instance"]["actual_status"] == "running"
    assert [a["action"] for a in started["attempts"]] == ["start"]

    # A preempted run whose machine never comes back: started, stuck, destroyed, replaced elsewhere.
    module(ansible, "vast_instance", {**base, "state": "stopped"})
    emulator.set_faults({"kind": "stuck_loading", "target": {"instance_id": first_id}})
    rc, replaced, out = module(ansible, "vast_instance", {**base, "state": "running", "loading_timeout": 3})
    assert rc == 0, out
    assert [a["action"] for a in replaced["attempts"]] == ["start", "create"]
    assert replaced["attempts"][0]["outcome"] == "stuck_loading" and replaced["attempts"][0]["destroyed"]
    assert replaced["terminated_ids"] == [first_id] and emulator.instance(first_id) is None
    assert replaced["instance"]["machine_id"] != first_machine
    assert [r["id"] for r in instances(emulator, "ctl-restart")] == [replaced["instance"]["id"]]


def test_exact_count_creates_in_parallel_and_trims(ansible, emulator):
    base = {"label": "ctl-pool", "disk": 16, "min_reliability": 0.9, "poll_interval": 0.5, "state": "running"}
    rc, grown, out = module(ansible, "vast_instance", {**base, "exact_count": 2})
    assert rc == 0, out
    assert sorted(i["label"] for i in grown["instances"]) == ["ctl-pool-1", "ctl-pool-2"]
    rc, same, _ = module(ansible, "vast_instance", {**base, "exact_count": 2})
    assert rc == 0 and not same["changed"]
    rc, trimmed, _ = module(ansible, "vast_instance", {**base, "exact_count": 1})
    assert rc == 0 and trimmed["changed"] and len(trimmed["terminated_ids"]) == 1
    assert [r["label"] for r in instances(emulator, "ctl-pool")] == ["ctl-pool-1"]


def test_api_errors_carry_the_api_code_and_message(ansible, emulator):
    emulator.set_faults({"kind": "http_error", "status": 400, "path": "/api/v0/asks/", "count": 1,
                         "body": json.dumps({"success": False, "error": "invalid_args", "msg": "error 400: no"})})
    rc, failed, out = module(ansible, "vast_instance", {"label": "ctl-err", "disk": 16, "min_reliability": 0.9,
                                                        "wait": False})
    assert rc != 0, out
    assert failed["api_error"]["status"] == 400 and failed["api_error"]["error"] == "invalid_args"
    assert instances(emulator, "ctl-err") == []


@pytest.mark.slow
def test_ansible_lint_production_profile_passes(ansible):
    lint = ansible.run("ansible-lint", "--offline", timeout=600)
    assert lint.rc == 0, lint.out[-4000:]
    assert "Profile 'production' was required, and it passed" in lint.out


def test_failed_cleanup_stops_the_failover_loudly(ansible, emulator):
    emulator.set_faults([{"kind": "stuck_loading", "target": "next_create"},
                         {"kind": "http_error", "status": 500, "method": "DELETE", "path": "/api/v0/instances/",
                          "count": 50}])
    seq = last_seq(emulator)
    rc, failed, out = module(ansible, "vast_instance", {"label": "ctl-leak", "state": "running", "disk": 16,
                                                        "min_reliability": 0.9, "poll_interval": 0.5,
                                                        "loading_timeout": 2})
    assert rc != 0, out
    assert "CLEANUP FAILED, NOT RETRYING" in failed["msg"] and "duplicate paid instance" in failed["msg"]
    assert len(creates_since(emulator, seq)) == 1, "no second create after a failed cleanup"
    assert failed["attempts"][0]["outcome"] == "stuck_loading" and not failed["attempts"][0]["destroyed"]


def test_create_answered_with_a_server_error_is_looked_up_before_retrying(ansible, emulator):
    emulator.set_faults({"kind": "http_error", "status": 502, "method": "PUT", "path": "/api/v0/asks/", "count": 1})
    seq = last_seq(emulator)
    rc, done, out = module(ansible, "vast_instance", {"label": "ctl-502", "state": "running", "disk": 16,
                                                      "min_reliability": 0.9, "poll_interval": 0.5})
    assert rc == 0, out
    assert [a["outcome"] for a in done["attempts"]] == ["error", "running"]
    assert "no instance with the label appeared" in done["attempts"][0]["detail"]
    log = emulator.requests(seq)
    puts = [i for i, r in enumerate(log) if r["method"] == "PUT" and r["path"].startswith("/api/v0/asks/")]
    assert [log[i]["status"] for i in puts] == [502, 200]
    between = log[puts[0] + 1:puts[1]]
    assert any(r["path"].startswith("/api/v1/instances/") and "ctl-502" in unquote(r["path"]) for r in between), \
        "the label must be looked up after the 502, before the next create"
    assert len(creates_since(emulator, seq)) == 2 and len(instances(emulator, "ctl-502")) == 1
