"""One contract, in code: what is generated from run_contract is what is committed, and the few places that
cannot import it (stage 0, inlined into onstart before anything is installed) say the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_contract as contract
from instance_agent import stage0
from instance_agent.onstart import ONSTART_LIMIT, SCRIPT, onstart_script
from run_contract.__main__ import render

REPO = Path(__file__).resolve().parents[2]


def test_ansible_vars_are_generated_from_the_module():
    assert (REPO / "playbooks/vars/contract.yml").read_text() == render(), (
        "playbooks/vars/contract.yml is stale: python -m run_contract ansible-vars > playbooks/vars/contract.yml")


def test_onstart_is_static_small_secret_free_and_committed():
    script = onstart_script()
    assert SCRIPT.read_text() == script, "instance_agent/onstart.sh is stale: python -m instance_agent onstart > it"
    assert len(script.encode()) <= ONSTART_LIMIT
    for name in contract.SECRET_ENV:
        assert f"${name}" not in script and f"${{{name}}}" not in script  # never expanded into the script
    assert "os.environ[\"CONTAINER_API_KEY\"]" not in script  # read by key only at destroy time ...
    assert "env[\"CONTAINER_API_KEY\"]" in script  # ... from the process environment, never a file


def test_stage0_agrees_with_the_contract():
    assert os.environ.get("INSTANCE_AGENT_DIR") or stage0.DIR == contract.AGENT_DIR
    assert stage0.PYTHON == contract.PYTHON
    assert f'"{contract.LEASE_ENV}"' in Path(stage0.__file__).read_text()


def test_onstart_runs_stage0_which_keeps_the_lease(tmp_path):
    """Stage 0 as onstart starts it, with a lease already over and no API to reach: it keeps trying to destroy
    (the log says so) instead of giving up, and it wrote the lease from its first second."""
    env = {"PATH": os.environ["PATH"], "INSTANCE_AGENT_DIR": str(tmp_path), contract.LEASE_ENV: "0",
           "CONTAINER_ID": "5", "CONTAINER_API_KEY": "k", "VAST_URL": "http://127.0.0.1:9"}
    proc = subprocess.Popen([sys.executable, stage0.__file__], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
    finally:
        proc.kill()
        proc.wait()
    assert "lease expired" in lines[0] and "destroy failed" in lines[1]
    assert (tmp_path / "state.json").exists()


@pytest.mark.parametrize("name", ["a", "A" * contract.MAX_RUN_NAME, "run-1.2_x"])
def test_run_names_allowed(name):
    assert contract.run_name_error(name) is None


@pytest.mark.parametrize("name", ["", "-x", "A" * (contract.MAX_RUN_NAME + 1), "a b", "a/b", None])
def test_run_names_refused(name):
    assert "1-128 characters" in contract.run_name_error(name)


def test_markers_round_trip():
    started = contract.parse_marker(contract.started_line("r1", ["autoencoder", "operator"], "offline:/w"))
    assert started.kind == "started" and started.fields == {"run": "r1", "stages": "autoencoder,operator",
                                                             "wandb": "offline:/w"}
    failed = contract.parse_marker(contract.failed_line("operator", "RuntimeError: boom"))
    assert (failed.kind, failed.fields, failed.message) == ("failed", {"stage": "operator"}, "RuntimeError: boom")
    assert contract.parse_marker(contract.finished_line()).kind == "finished"
    assert contract.parse_marker("step 5 loss 0.1") is None


def test_bucket_settings_parser():
    env = {"B2_KEY_ID": "k", "B2_APP_KEY": "s", "B2_S3_ENDPOINT": "s3.us-west-004.backblazeb2.com", "B2_BUCKET": "b"}
    found = contract.bucket_settings(env)
    assert found.endpoint == "https://s3.us-west-004.backblazeb2.com" and found.region == "us-west-004"
    assert "key_id" not in repr(found) and "app_key" not in repr(found)  # the secrets stay out of any log
    with pytest.raises(contract.BucketSettingsError, match="missing B2_BUCKET"):
        contract.bucket_settings({k: v for k, v in env.items() if k != "B2_BUCKET"})
