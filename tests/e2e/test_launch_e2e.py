"""End to end: `ansible-playbook playbooks/launch.yml` against the emulator (real HTTP, real sshd instances),
the roles over real SSH, the pipeline under tmux with real torch, rclone and the pipeline against a real S3
server, and the supervisor destroying its own instance through the emulator's API.
"""

from __future__ import annotations

import json
import re

import pytest
from e2e_support import changed_tasks, recap, record_of, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_demo_path_runs_to_the_end_and_cleans_up(scenarios, world):
    rec = record_of(scenarios, "demo_path")
    outcome = rec.facts["outcome"]
    assert outcome.final_state == "succeeded"
    assert outcome.instance_gone and not world.instances("e2e-demo")
    for key in ("logs/autoencoder.log", "logs/evaluate.log", "logs/pipeline.log", "logs/supervisor.log",
                "metrics/metrics.json", "checkpoints/evaluate/final.pt", "checkpoints/operator/final.pt",
                "status.json", "heartbeat.json"):
        assert key in outcome.artifacts, key
    assert "| operator |" in outcome.metrics_table
    lines = "\n".join(rec.facts["lines"])
    assert re.search(r"stage \w+.*running", lines) and "succeeded" in lines  # progress, stage by stage
    assert "destroyed by its own supervisor" in lines
    # The supervisor destroyed the instance itself: the emulator saw the DELETE with the instance's own key.
    # (The request is logged once answered; destroying kills the instance's processes first: it trails.)
    def self_destroys():
        return [r for r in world.emulator.requests() if r["method"] == "DELETE"
                and r["path"].startswith("/api/v0/instances/") and r["caller"].startswith("instance:")]

    assert wait_for("the self-destroy in the request log", self_destroys, timeout=60), "no self-destroy by an instance key"
    assert "training started in" in outcome.launch_output  # the phase timings


def test_crash_mid_stage_still_syncs_logs_and_destroys(scenarios, world):
    rec = record_of(scenarios, "crash")
    assert not world.instances("e2e-crash")
    assert rec.facts["heartbeat"]["state"] == "failed"
    assert "operator" in rec.facts["heartbeat"]["error"]
    assert "PIPELINE FAILED stage=operator" in rec.facts["pipeline_log"]
    assert {"logs/operator.log", "logs/supervisor.log", "heartbeat.json"} <= set(rec.facts["artifacts"])


def test_runtime_budget_stops_syncs_and_destroys(scenarios, world):
    rec = record_of(scenarios, "budget")
    beat = rec.facts["heartbeat"]
    assert not world.instances("e2e-budget-1")
    assert beat["state"] == "budget_exceeded" and "max_runtime_hours=0.1 exceeded" in beat["error"]
    assert beat["max_runtime_hours"] == 0.1 and beat["elapsed_s"] >= 360  # counted from the instance's creation
    # The sweep's override reached the pipeline: the operator stage was training towards 100000 steps.
    assert "/100000" in rec.facts["operator_log"]
    assert "logs/pipeline.log" in rec.facts["artifacts"]


def test_relaunch_on_a_ready_instance_changes_nothing(scenarios):
    rec = record_of(scenarios, "relaunch")
    second = rec.facts["second"]
    counts = recap(second, "e2e-relaunch")
    assert counts["failed"] == 0 and counts["changed"] == 0, changed_tasks(second, "e2e-relaunch")
    assert "0 file(s) fetched" in second and "3 already valid" in second  # the data are not downloaded twice
    assert rec.facts["heartbeat"]["state"] == "succeeded"
    assert rec.facts["gone"]  # teardown.yml destroyed it (auto_shutdown=false kept it until then)
    # The pipeline learns its W&B group and the launch's facts from the policy the launch wrote.
    env = rec.facts["pipeline_env"]
    assert env["TRAIN_RUN_GROUP"] == "e2e-relaunch" and env["TRAIN_GPU_NAME"] and float(env["TRAIN_DPH"]) > 0
    assert env["TRAIN_INTERRUPTIBLE"] == "0" and env["TRAIN_NUM_GPUS"] == "1"


def test_code_source_local_prunes_files_deleted_on_the_controller(scenarios):
    pruned = record_of(scenarios, "relaunch").facts["pruned"]
    assert pruned == {"stale": False, "kept": True, "outside": True, "absolute": True, "tree": True}


def test_secrets_appear_nowhere(scenarios, world):
    rec = record_of(scenarios, "relaunch")
    secrets = [*world.secrets.values(), rec.facts["container_key"]]
    assert len(rec.facts["container_key"]) > 8
    ps = rec.facts["ps"]
    assert "instance_agent" in ps and "supervise" in ps and "training run" in ps  # the listing shows the run ...
    assert not [s for s in secrets if s in ps]  # ... and no secret in any process argument
    # No file holds them: the agent has the container's environment from onstart, tools over SSH read PID 1's.
    # The grep's positive control (a file the test wrote with one secret) is found: the search works.
    assert rec.facts["files_seen"] > 50 and rec.facts["files_with_secrets"] == ["/tmp/grep-control"]
    assert rec.facts["session_env_secrets"] == ""  # an SSH session sees none of them, as on Vast
    assert not [s for s in secrets if s in rec.facts["onstart"]]
    outputs = "\n".join(out for name in scenarios for out in scenarios[name].outputs)
    assert "ESTABLISH SSH CONNECTION FOR USER: root" in outputs  # one launch ran at -vvv, roles and all
    assert not [s for s in secrets if s in outputs]  # Ansible output of every launch, relaunch and teardown
    objects = rec.facts["objects"]
    assert "logs/pipeline.log" in "".join(objects)
    assert not [(key, s) for key, data in objects.items() for s in secrets if s.encode() in data]


def test_resume_after_preemption_from_the_bucket(scenarios):
    rec = record_of(scenarios, "resume")
    assert "preempt" in (rec.facts["preempted"] or "").lower()
    assert rec.facts["replaced"]  # the stopped machine never came back: launch rented another
    log = rec.facts["log"]  # the new instance's pipeline log: it never saw the first machine's disk
    assert "fetched checkpoints from the bucket" in log and "operator/last.pt" in log
    assert "[autoencoder] finished earlier" in log  # a finished stage is not trained again
    step = int(re.search(r"\[operator\] resuming .* at step (\d+)", log).group(1))
    assert step > 0


def test_relaunch_while_training_changes_nothing(scenarios):
    third = record_of(scenarios, "resume").facts["third"]
    counts = recap(third, "e2e-resume")
    assert counts["failed"] == 0 and counts["changed"] == 0, changed_tasks(third, "e2e-resume")
    assert "0 file(s) fetched" in third


def test_teardown_syncs_before_destroying(scenarios):
    synced = record_of(scenarios, "resume").facts["synced_log"]
    assert re.search(r"\[operator\] resuming .* at step \d+", synced)  # only teardown's sync can have sent it


def test_heartbeat_matches_the_contract(scenarios):
    beat = record_of(scenarios, "relaunch").facts["heartbeat"]
    contract = {"pid", "started_at", "updated_at", "state", "stage", "step", "elapsed_s", "dph", "cost_so_far",
                "max_runtime_hours", "max_cost"}
    assert contract <= set(beat), contract - set(beat)
    assert beat["dph"] > 0 and beat["cost_so_far"] > 0
    json.dumps(beat)
