"""The vast_* modules through `ansible localhost -m ...` against the emulator, plus docs and lint."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from ctl_support import creates_since, instances, last_seq

from vast_emulator.testing import make_ssh_keypair

MODULES = tuple(f"universal_simulator.vastai.{name}" for name in (
    "vast_offer_info", "vast_instance", "vast_instance_info", "vast_env_var", "vast_env_var_info",
    "vast_ssh_key", "vast_journal"))


def modules(ansible, *steps, flags: tuple = ()):
    """Run module calls on localhost as the tasks of one playbook (one ansible start-up for all of them).

    A step is (module, args) or (module, args, task keywords), with the module's name within the collection
    (universal_simulator.vastai); args may template earlier results `r0`, `r1`, ...
    Returns [(rc, result)] per step and the output.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ctl-module-"))
    tasks = []
    for i, step in enumerate(steps):
        name, args, keywords = (*step, {})[:3]
        tasks.append({"name": f"Step {i}: {name}", f"universal_simulator.vastai.{name}": args,
                      "register": f"r{i}", "ignore_errors": True, **keywords})
    tasks.append({"name": "Keep the results", "check_mode": False, "ansible.builtin.copy": {
        "content": "{{ [" + ", ".join(f"r{i} | default({{}})" for i in range(len(steps))) + "] | to_json }}",
        "dest": str(workdir / "results.json"), "mode": "0600"}})
    playbook = workdir / "calls.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Call modules", "hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}]))
    run = ansible.run("ansible-playbook", str(playbook), *flags)
    results = json.loads((workdir / "results.json").read_text()) if (workdir / "results.json").exists() else []
    assert len(results) == len(steps), run.out[-3000:]
    return [(1 if r.get("failed") else 0, r) for r in results], run.out


def module(ansible, name: str, args: dict, *flags: str):
    """One module call; returns (rc, result, output)."""
    ((rc, result),), out = modules(ansible, (name, args), flags=flags)
    return rc, result, out


def test_every_module_and_the_inventory_plugin_render_their_docs(ansible):
    doc = ansible.run("ansible-doc", *MODULES)
    assert doc.rc == 0, doc.out
    for name in MODULES:
        page = doc.out.split(f"> MODULE {name} ", 1)[1].split("> MODULE ", 1)[0]
        assert "api_key" in page and "EXAMPLES" in page and "RETURN VALUES" in page, page
    plugin = ansible.run("ansible-doc", "-t", "inventory", "universal_simulator.vastai.vast")
    assert plugin.rc == 0 and "keyed_groups" in plugin.out and "known_hosts_dir" in plugin.out, plugin.out


def test_env_var_is_idempotent_and_never_returns_values(ansible, emulator):
    secret = "hush-9c41e2d0"
    (first, again, dry, info), out = modules(
        ansible,
        ("vast_env_var", {"name": "CTL_TOKEN", "value": secret}),
        ("vast_env_var", {"name": "CTL_TOKEN", "value": secret}),
        ("vast_env_var", {"name": "CTL_TOKEN", "value": secret + "x"}, {"check_mode": True}),
        ("vast_env_var_info", {"required": ["CTL_TOKEN", "CTL_MISSING"]}))
    assert first[0] == 0 and first[1]["changed"] and first[1]["outcomes"] == {"CTL_TOKEN": "created"}
    assert again[0] == 0 and not again[1]["changed"] and again[1]["unchanged"] == ["CTL_TOKEN"]
    assert dry[0] == 0 and dry[1]["changed"] and dry[1]["outcomes"] == {"CTL_TOKEN": "updated"}
    assert emulator.secrets()["CTL_TOKEN"] == secret  # check mode wrote nothing (the API shows values masked)
    assert "CTL_TOKEN" in info[1]["names"] and info[1]["missing"] == ["CTL_MISSING"]
    assert secret not in out and secret not in json.dumps([first, again, dry, info])
    rc, gone, _ = module(ansible, "vast_env_var", {"name": "CTL_TOKEN", "state": "absent"})
    assert rc == 0 and gone["outcomes"] == {"CTL_TOKEN": "deleted"}
    assert "CTL_TOKEN" not in emulator.api("GET", "/api/v0/secrets/").json()["secrets"]


def test_ssh_key_registers_once_and_attaches_only_when_refused(ansible, emulator, tmp_path):
    extra = make_ssh_keypair(tmp_path / "extra")
    attach = {"public_key": extra.public_key, "instance_id": "{{ r0.instance.id }}",
              "private_key_file": str(extra.private_key)}
    (created, first, again, removed, bad), out = modules(
        ansible,
        ("vast_instance", {"label": "ctl-key", "state": "running", "disk": 16, "min_reliability": 0.9,
                           "poll_interval": 0.5, "ssh_key_file": _launch_key(ansible)}),
        ("vast_ssh_key", attach),
        ("vast_ssh_key", attach),
        ("vast_ssh_key", {"public_key": extra.public_key, "state": "absent"}),
        ("vast_ssh_key", {"public_key": "-----BEGIN OPENSSH PRIVATE KEY----- abc"}))
    assert created[0] == 0, created
    assert first[0] == 0 and first[1]["registered"] and first[1]["attached"] and first[1]["changed"]
    assert again[0] == 0 and not again[1]["changed"] and again[1]["key_id"] == first[1]["key_id"]
    assert removed[0] == 0 and removed[1]["changed"]
    assert bad[0] != 0 and "that is a private key" in bad[1]["msg"]


def _launch_key(ansible) -> str:
    return next(v.split("=", 1)[1] for v in ansible.common_vars if v.startswith("ssh_key_file="))


def test_stopped_run_is_started_and_replaced_when_it_does_not_come_back(ansible, emulator):
    base = {"label": "ctl-restart", "disk": 16, "min_reliability": 0.9, "poll_interval": 0.5,
            "ssh_key_file": _launch_key(ansible)}
    (created, stopped), _ = modules(ansible, ("vast_instance", {**base, "state": "running"}),
                                    ("vast_instance", {**base, "state": "stopped"}))
    assert created[0] == 0, created
    first_id, first_machine = created[1]["instance"]["id"], created[1]["instance"]["machine_id"]
    assert stopped[0] == 0 and stopped[1]["changed_ids"] == [first_id]
    assert emulator.instance(first_id)["actual_status"] == "stopped"

    (started, stopped_again), _ = modules(ansible, ("vast_instance", {**base, "state": "running"}),
                                          ("vast_instance", {**base, "state": "stopped"}))
    assert started[0] == 0 and started[1]["instance"]["id"] == first_id
    assert started[1]["instance"]["actual_status"] == "running"
    assert [a["action"] for a in started[1]["attempts"]] == ["start"]
    assert stopped_again[0] == 0

    # A preempted run whose machine never comes back: started, stuck, destroyed, replaced elsewhere.
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
    (grown, same, trimmed), out = modules(ansible, ("vast_instance", {**base, "exact_count": 2}),
                                          ("vast_instance", {**base, "exact_count": 2}),
                                          ("vast_instance", {**base, "exact_count": 1}))
    assert grown[0] == 0, out
    assert sorted(i["label"] for i in grown[1]["instances"]) == ["ctl-pool-1", "ctl-pool-2"]
    assert same[0] == 0 and not same[1]["changed"]
    assert trimmed[0] == 0 and trimmed[1]["changed"] and len(trimmed[1]["terminated_ids"]) == 1
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
                                                      "min_reliability": 0.9, "poll_interval": 0.5,
                                                      "create_lookup_window": 2})
    assert rc == 0, out
    assert [a["outcome"] for a in done["attempts"]] == ["error", "running"]
    assert "no instance with the label appeared" in done["attempts"][0]["detail"]
    log = emulator.requests(seq)
    puts = [i for i, r in enumerate(log) if r["method"] == "PUT" and r["path"].startswith("/api/v0/asks/")]
    assert [log[i]["status"] for i in puts] == [502, 200]
    between = log[puts[0] + 1:puts[1]]
    # One account listing serves every lookup (vastkit.client's shared listing), so the label is not in the path.
    assert any(r["path"].startswith("/api/v1/instances/") for r in between), \
        "the instances must be looked up after the 502, before the next create"
    assert len(creates_since(emulator, seq)) == 2 and len(instances(emulator, "ctl-502")) == 1


def test_a_refused_launch_key_stops_the_failover(ansible, emulator, tmp_path):
    stranger = make_ssh_keypair(tmp_path / "stranger")  # never registered on the account
    seq = last_seq(emulator)
    rc, failed, out = module(ansible, "vast_instance", {"label": "ctl-nokey", "state": "running", "disk": 16,
                                                        "min_reliability": 0.9, "poll_interval": 0.5,
                                                        "loading_timeout": 3, "ssh_key_file": str(stranger.private_key)})
    assert rc != 0, out
    assert "refused the launch key" in failed["msg"]
    assert [(a["outcome"], a["destroyed"]) for a in failed["attempts"]] == [("ssh_auth", True)]
    assert len(creates_since(emulator, seq)) == 1 and instances(emulator, "ctl-nokey") == []
