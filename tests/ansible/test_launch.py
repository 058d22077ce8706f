"""launch.yml end to end against the emulator (HTTP + real SSH), provisioning skipped."""

from __future__ import annotations

import json
import subprocess

import pytest
from ctl_support import REPO, Ansible, creates_since, instances, last_seq, writes_since

from vastkit.client import VastAPI

LAUNCH = ["-e", "config=tiny", "-e", "provision=false"]


def test_launch_is_idempotent_and_in_inventory(ansible, emulator):
    first = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-one")
    assert first.rc == 0, first.out
    rows = instances(emulator, "ctl-one")
    assert len(rows) == 1 and rows[0]["actual_status"] == "running"
    assert f"instance {rows[0]['id']}" in first.out and "Tear down:  ansible-playbook playbooks/teardown.yml" in first.out
    assert "SSH:        ssh ctl-one " in first.out and "ssh ctl-one -t tmux attach -t training" in first.out
    ssh_config = dict(v.split("=", 1) for v in ansible.common_vars[1::2])["ssh_config_file"]
    login = _ssh(ssh_config, "ctl-one")
    assert login.returncode == 0 and login.stdout.strip() == "in", login.stderr  # batch mode: no host-key prompt

    graph = ansible.run("ansible-inventory", "-i", "inventory/vast.yml", "--graph")
    assert graph.rc == 0, graph.out
    running = graph.out.split("@vast_running:", 1)[1].split("@", 1)[0]
    assert "ctl-one" in running
    assert "ctl-one" in graph.out.split("@config_ctl:", 1)[1].split("@", 1)[0]  # keyed_groups from inventory/vast.yml
    host = json.loads(ansible.run("ansible-inventory", "-i", "inventory/vast.yml", "--host", "ctl-one").out)
    assert host["vast_id"] == rows[0]["id"] and host["ansible_user"] == "root"
    # The direct address (public_ipaddr + ports["22/tcp"]); ssh_host:ssh_port is Vast's proxy.
    direct_port = int(rows[0]["ports"]["22/tcp"][0]["HostPort"])
    assert (host["ansible_host"], host["ansible_port"]) == (rows[0]["public_ipaddr"], direct_port) == ("127.0.0.1", direct_port)
    assert "UserKnownHostsFile=" in host["ansible_ssh_common_args"] and str(rows[0]["id"]) in host["ansible_ssh_common_args"]

    seq = last_seq(emulator)
    again = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-one")
    assert again.rc == 0, again.out
    assert all(counts["changed"] == 0 for counts in again.recap().values()), again.out
    assert [r["id"] for r in instances(emulator, "ctl-one")] == [rows[0]["id"]]
    assert creates_since(emulator, seq) == []

    down = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-one")
    assert down.rc == 0, down.out
    gone = _ssh(ssh_config, "ctl-one")
    assert gone.returncode == 255 and "Could not resolve hostname" in gone.stderr, "teardown removed the entry"


def _ssh(config: str, host: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", host, "echo in"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_check_mode_prints_the_plan_and_writes_nothing(ansible, emulator):
    seq = last_seq(emulator)
    dry = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-dry", "--check")
    assert dry.rc == 0, dry.out
    assert "action: create" in dry.out and "dph_total" in dry.out and "TRAIN_RUN_NAME: ctl-dry" in dry.out
    assert "offer:" in dry.out and "onstart: " in dry.out
    assert instances(emulator, "ctl-dry") == []
    assert writes_since(emulator, seq) == []
    assert any(r["path"].startswith("/api/v0/bundles/") for r in emulator.requests(seq))  # it did search


def test_check_mode_plans_an_offer_id_with_its_gpu_and_the_lease(ansible, emulator):
    api = VastAPI.from_env(api_key=emulator.api_key, url=emulator.url)
    h100 = api.search_offers("gpu_name=H100_PCIE reliability>=0.9", limit=1)[0]
    pairs = zip(ansible.common_vars[::2], ansible.common_vars[1::2], strict=True)
    no_gpu = Ansible(ansible.env, [v for pair in pairs if pair[1] != "gpu=any" for v in pair])  # gpu not given
    seq = last_seq(emulator)
    dry = no_gpu.playbook("launch.yml", "-v", *LAUNCH, "-e", "run_name=ctl-offer", "-e", f"offer_id={h100.id}",
                          "-e", "lease_minutes=0.5", "--check")
    assert dry.rc == 0, dry.out
    planned = dry.out.split("TASK [Plan the runs", 1)[1].split("TASK [", 1)[0]
    assert "gpu: H100_PCIE" in planned and "lease_s: 30" in planned  # the failover searches the offer's GPU
    assert f"offer_id: {h100.id}" in planned
    assert writes_since(emulator, seq) == []


def test_failover_skips_a_vanished_offer_and_a_stuck_instance(ansible, emulator):
    emulator.set_faults([{"kind": "offer_gone", "target": "next_create"},
                         {"kind": "stuck_loading", "target": "next_create"}])
    seq = last_seq(emulator)
    run = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-failover", "-e", "loading_timeout=3")
    assert run.rc == 0, run.out

    puts = creates_since(emulator, seq)
    assert [p["status"] for p in puts] == [410, 200, 200], puts
    offer_ids = [int(p["path"].split("/")[4]) for p in puts]
    catalogue = _catalogue_machines()
    assert len({catalogue[o] for o in offer_ids}) == 3, "each attempt must be on another machine"

    rows = instances(emulator, "ctl-failover")
    assert len(rows) == 1 and rows[0]["actual_status"] == "running"
    assert rows[0]["machine_id"] == catalogue[offer_ids[2]]
    deletes = [r for r in emulator.requests(seq) if r["method"] == "DELETE" and r["path"].startswith("/api/v0/instances/")]
    assert len(deletes) == 1 and deletes[0]["status"] == 200
    stuck_id = int(deletes[0]["path"].split("/")[4])
    assert stuck_id != rows[0]["id"] and emulator.instance(stuck_id) is None
    # Each step was said as it happened.
    assert f"offer {offer_ids[0]} is gone; trying the next one" in run.out
    assert f"destroyed instance {stuck_id} (stuck_loading), verified gone" in run.out
    assert f"attempt 3/3: renting offer {offer_ids[2]}" in run.out


def test_launch_prints_its_progress_while_it_waits(ansible, emulator):
    # SSH refuses for 6 s after the instance runs: the wait is long enough to see lines arrive during it.
    emulator.set_faults([{"kind": "ssh_refused", "target": "next_create", "seconds": 6}])
    rc, lines = ansible.playbook_lines("launch.yml", *LAUNCH, "-e", "run_name=ctl-progress")
    text = "\n".join(line for _, line in lines)
    assert rc == 0, text
    task = next(i for i, (_, line) in enumerate(lines) if line.startswith("TASK [Rent the instance"))
    done = next(i for i in range(task, len(lines)) if lines[i][1].startswith(("ok: [", "changed: [")))
    progress = [(at, line.strip()) for at, line in lines[task + 1:done]]
    said = [line for _, line in progress]
    assert said and all(line.startswith("ctl-progress: ") for line in said), text
    assert "attempt 1/3: renting offer" in said[0] and "$" in said[0]
    instance_id = instances(emulator, "ctl-progress")[0]["id"]
    created_at = next(at for at, line in progress if f"created instance {instance_id}" in line)
    assert any("SSH not ready yet" in line for line in said), said
    assert f"instance {instance_id}: ready, SSH root@127.0.0.1:" in said[-1]
    # Printed while the module waited, not with its result: 6 s of refused SSH lie between.
    assert lines[done][0] - created_at > 4, progress


def _catalogue_machines() -> dict[int, int]:
    from importlib import resources

    data = json.loads(resources.files("vast_emulator").joinpath("data/offers.json").read_text())
    return {o["id"]: o["machine_id"] for o in data["offers"]}


@pytest.mark.slow
def test_failed_provisioning_ends_with_the_instance_destroyed(ansible, emulator, tmp_path):
    for name in ("B2_KEY_ID", "B2_APP_KEY", "B2_S3_ENDPOINT", "B2_S3_REGION", "B2_BUCKET"):
        emulator.api("DELETE", "/api/v0/secrets/", json={"key": name})
        emulator.api("POST", "/api/v0/secrets/", json={"key": name, "value": "unused-by-this-test"})
    # A remote the controller reads (so the launch plan accepts it) but the instance cannot: its /tmp is private.
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "-C", str(REPO), "push", "-q", str(remote), "HEAD:refs/heads/launched"], check=True)
    bad_commit = ["-e", f"code_repo={remote}", "-e", "allow_dirty=true"]  # bootstrap cannot clone it

    failed = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "run_name=ctl-abort", *bad_commit)
    assert failed.rc != 0
    assert "Provisioning of ctl-abort failed" in failed.out and "destroyed" in failed.out
    assert instances(emulator, "ctl-abort") == []

    kept = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "run_name=ctl-abort-kept",
                            "-e", "auto_shutdown=false", *bad_commit)
    assert kept.rc != 0
    assert "LEFT RUNNING AND BILLING" in kept.out and "auto_shutdown=false" in kept.out
    assert [r["actual_status"] for r in instances(emulator, "ctl-abort-kept")] == ["running"]


def test_inventory_cache_serves_the_last_listing_until_flushed(ansible, emulator, tmp_path):
    instance_id = emulator.launch(label="ctl-cached")
    emulator.wait_status(instance_id, "running")
    config = tmp_path / "cached.vast.yml"
    config.write_text("plugin: universal_simulator.vastai.vast\nlabel_prefix: ctl-cached\ncache: true\n"
                      "cache_plugin: ansible.builtin.jsonfile\n"
                      f"cache_connection: {tmp_path / 'cache'}\ncache_timeout: 600\n")
    first = ansible.run("ansible-inventory", "-i", str(config), "--list")
    assert first.rc == 0 and "ctl-cached" in json.loads(first.out)["vast"]["hosts"], first.out
    emulator.destroy(instance_id)
    cached = ansible.run("ansible-inventory", "-i", str(config), "--list")
    assert "ctl-cached" in json.loads(cached.out)["vast"]["hosts"]  # from the cache, no API call
    fresh = ansible.run("ansible-inventory", "-i", str(config), "--list", "--flush-cache")
    assert "ctl-cached" not in json.dumps(json.loads(fresh.out).get("vast", {}))


def test_the_plan_module_renders_its_docs(ansible):
    doc = ansible.run("ansible-doc", "universal_simulator.vastai.vast_launch_plan")
    assert doc.rc == 0, doc.out
    assert "repo_root" in doc.out and "EXAMPLES" in doc.out and "RETURN VALUES" in doc.out
    assert "corresponding action plugin" in doc.out  # the one that passes the extra vars
