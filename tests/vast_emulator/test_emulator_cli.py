"""The real vastai CLI (1.9.1), unmodified, against the emulator: the checklist of vast-api.md §6.

The CLI exits 0 even on errors, so every step asserts on what it printed.
"""

from __future__ import annotations

import json


def test_cli_checklist(vastai, emulator, ssh_keypair):
    since = emulator.requests()[-1]["seq"]
    offers = json.loads(vastai("search", "offers", "reliability > 0.9 num_gpus=1 gpu_name=RTX_4090", "-o", "dph", "--raw").stdout)
    assert offers and all(o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1 for o in offers)
    assert [o["dph_total"] for o in offers] == sorted(o["dph_total"] for o in offers)
    bundles = [e for e in emulator.requests(since) if e["path"] == "/api/v0/bundles/"]
    assert bundles and bundles[-1]["method"] == "POST" and bundles[-1]["status"] == 200

    interruptible = json.loads(vastai("search", "offers", "gpu_name in [RTX_4090,RTX_3090] cpu_ram>=32 verified=any",
                                      "-i", "--limit", "5", "--raw").stdout)
    assert 0 < len(interruptible) <= 5 and all(o["is_bid"] and o["cpu_ram"] >= 32000 for o in interruptible)

    offer_id = offers[0]["id"]
    created = json.loads(vastai("create", "instance", str(offer_id), "--image", "vastai/pytorch", "--disk", "16",
                                "--onstart-cmd", "echo cli-onstart-$FOO", "--env", "-e FOO=bar -p 22:22",
                                "--label", "cli-run1", "--ssh", "--direct", "--raw").stdout)
    instance_id = created["new_contract"]
    assert created["success"] is True and created["instance_api_key"]
    assert offer_id not in [o["id"] for o in json.loads(vastai("search", "offers", "gpu_name=RTX_4090", "--raw").stdout)]
    reuse = vastai("create", "instance", str(offer_id), "--image", "vastai/pytorch", "--raw")
    assert json.loads(reuse.stderr)["status_code"] == 404 and "no_such_ask" in reuse.stderr

    emulator.wait_status(instance_id)
    shown = json.loads(vastai("show", "instance", str(instance_id), "--raw").stdout)
    assert shown["actual_status"] == "running" and shown["label"] == "cli-run1"
    assert shown["extra_env"] == {"FOO": "bar", "-p 22:22": "1"}  # the CLI turned our pairs into a dict
    port = int(shown["ports"]["22/tcp"][0]["HostPort"])
    listed = json.loads(vastai("show", "instances", "--raw").stdout)
    assert instance_id in [row["id"] for row in listed]

    assert vastai("ssh-url", str(instance_id)).stdout.strip() == f"ssh://root@127.0.0.1:{port}"

    logs = vastai("logs", str(instance_id), "--tail", "100").stdout
    assert "cli-onstart-bar" in logs

    assert vastai("label", "instance", str(instance_id), "cli-run2").stdout.strip() == f"label for {instance_id} set to cli-run2."
    assert vastai("stop", "instance", str(instance_id)).stdout.strip() == f"stopping instance {instance_id}."
    stopped = json.loads(vastai("show", "instance", str(instance_id), "--raw").stdout)
    assert (stopped["actual_status"], stopped["intended_status"], stopped["label"]) == ("stopped", "stopped", "cli-run2")
    assert vastai("start", "instance", str(instance_id)).stdout.strip() == f"starting instance {instance_id}."
    emulator.wait_status(instance_id)

    assert "added" in vastai("create", "env-var", "CLI_VAR", "VALUE1").stdout
    duplicate = vastai("create", "env-var", "CLI_VAR", "VALUE1")
    assert "already exists" in duplicate.stdout + duplicate.stderr
    # Vast masks values on read, even with -s (which only stops the CLI's own masking).
    assert json.loads(vastai("show", "env-vars", "--raw", "-s").stdout)["CLI_VAR"] == "********"
    assert emulator.secrets()["CLI_VAR"] == "VALUE1"
    vastai("delete", "env-var", "CLI_VAR")

    extra_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForCliTest cli@test"
    assert "ssh-key created" in vastai("create", "ssh-key", extra_key).stdout
    assert extra_key in [k["key"] for k in json.loads(vastai("show", "ssh-keys", "--raw").stdout)]
    assert "attached" in vastai("attach", "ssh", str(instance_id), extra_key).stdout
    attached = emulator.api("GET", f"/api/v0/instances/{instance_id}/ssh/").json()["ssh_keys"]
    assert extra_key in [k["key"] for k in attached]

    table = vastai("show", "instances")  # the non-raw table also asks GET /api/v0/instances/filters/
    assert "cli-run2" in table.stdout
    assert [e["status"] for e in emulator.requests(since) if e["path"] == "/api/v0/instances/filters/"][-1] == 200

    # The instance's own key (CONTAINER_API_KEY) through the CLI: other instances are off limits.
    scoped = vastai("--api-key", created["instance_api_key"], "show", "instance", str(instance_id + 10_000), "--raw")
    assert json.loads(scoped.stderr)["status_code"] == 403

    user = json.loads(vastai("show", "user", "--raw").stdout)
    assert user["id"] and "api_key" not in user

    bad_key = vastai("--api-key", "wrong", "show", "instances", "--raw")
    assert json.loads(bad_key.stderr) == {"error": True, "status_code": 401, "msg": "Invalid user key"}

    assert vastai("--api-key", created["instance_api_key"], "destroy", "instance", str(instance_id), "-y").stdout.strip() == (
        f"destroying instance {instance_id}."
    )
    assert json.loads(vastai("show", "instance", str(instance_id), "--raw").stdout) == {"instances": None}
    destroy_calls = [e for e in emulator.requests(since) if e["method"] == "DELETE" and str(instance_id) in e["path"]]
    assert destroy_calls and destroy_calls[-1]["status"] == 200
    assert destroy_calls[-1]["caller"] == f"instance:{instance_id}"  # it destroyed itself with its own key
