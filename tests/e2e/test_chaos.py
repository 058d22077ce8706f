"""The safety scenarios (tools/chaos.py), run beside the other e2e scenarios: every fault ends with no GPU
billing (destroyed, or stopped with the disk kept when the data could not be saved), the artifacts in the
bucket, and what happened in the run's heartbeat. `make chaos` runs the same scenarios and writes the table
in docs/safety.md.
"""

from __future__ import annotations

import re

import pytest
from e2e_support import record_of

from tools.chaos import ChaosResult

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
# Seconds from the fault until no GPU bills, beyond which a scenario fails: the stated grace (on a loaded
# 2-core CI box running a score of runs side by side; the launch itself counts where the fault is in it).
GRACE_S = 600


def chaos(scenarios, name: str) -> ChaosResult:
    res: ChaosResult = record_of(scenarios, f"chaos_{name}").facts["chaos"]
    assert res.billing_ended_s is not None and res.billing_ended_s < GRACE_S, res
    # What happened is readable afterwards: the heartbeat in the bucket (or, without B2, the stopped disk).
    assert name in ("b2_down_at_end", "controller_gone", "ssh_lost_provisioning") or res.facts.get("heartbeat"), res
    return res


def resumed(log: str) -> bool:
    return bool(re.search(r"\[operator\] resuming .* at step \d+", log))


def test_container_restart_resumes_on_the_same_machine_and_finishes(scenarios):
    res = chaos(scenarios, "container_restart")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded" and beat["ending"] == "destroyed"
    assert beat["supervisor_starts"] >= 2 and resumed(res.facts["pipeline_log"])
    assert "agent started" in res.facts["agent_log"]


def test_a_preempted_instance_that_comes_back_resumes_by_itself(scenarios):
    res = chaos(scenarios, "preempt_resume")
    assert res.facts["outbid_row"] == {"cur_state": "stopped", "intended_status": "stopped", "next_state": "stopped"}
    assert res.facts["same_instance"]
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded" and beat["supervisor_starts"] >= 2
    assert resumed(res.facts["pipeline_log"])


def test_kill_9_of_the_supervisor(scenarios):
    res = chaos(scenarios, "kill_supervisor")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded" and beat["supervisor_starts"] == 2
    assert "crash 1" in res.facts["agent_log"] or "without finishing" in res.facts["agent_log"]


def test_kill_9_of_the_pipeline(scenarios):
    res = chaos(scenarios, "kill_pipeline")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded" and beat["pipeline_restarts"] == 1
    assert resumed(res.facts["pipeline_log"])


def test_disk_full_still_gets_the_data_out(scenarios):
    res = chaos(scenarios, "disk_full")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["synced"] is True
    assert beat["state"] == "failed" and "No space left" in (beat["error"] or "") + res.facts["pipeline_log"]
    assert "logs/pipeline.log" in res.facts["artifacts"] and any("checkpoints/operator/" in a for a in res.facts["artifacts"])


def test_delete_refused_for_a_while_is_retried_until_it_works(scenarios):
    res = chaos(scenarios, "delete_refused")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and res.billing_ended_s >= res.facts["refused_s"]
    assert beat["ending"] == "destroyed" and beat["ending_attempts"] >= 2 and "503" in (beat["ending_error"] or "")


def test_b2_down_mid_run_does_not_stop_training_and_the_sync_catches_up(scenarios):
    res = chaos(scenarios, "b2_down_mid_run")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded" and beat["synced"] is True
    assert "retried at the next save" in res.facts["pipeline_log"]
    assert "checkpoints/operator/final.pt" in res.facts["artifacts"]


def test_b2_down_at_the_end_stops_instead_of_destroying(scenarios):
    res = chaos(scenarios, "b2_down_at_end")
    assert res.outcome == "stopped"  # the disk keeps the only copy of the artifacts; GPU billing ended
    assert [r["intended_status"] for r in res.facts["rows"]] == ["stopped"]


def test_ctrl_c_in_tmux_syncs_then_destroys(scenarios):
    res = chaos(scenarios, "ctrl_c_tmux")
    assert res.facts["send_keys"][0] == 0
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "interrupted" and "Ctrl-C" in beat["ending_reason"]
    assert "logs/pipeline.log" in res.facts["artifacts"]


def test_killing_the_tmux_session_breaks_nothing(scenarios):
    res = chaos(scenarios, "tmux_killed")
    beat = res.facts["heartbeat"]
    assert res.outcome == "destroyed" and beat["state"] == "succeeded"
    assert "PIPELINE FINISHED ok" in res.facts["pipeline_log"]


def test_a_controller_gone_after_create_is_covered_by_the_lease(scenarios):
    res = chaos(scenarios, "controller_gone")
    assert res.outcome == "destroyed" and res.facts["delete_callers"] == [f"instance:{res.facts['instance_id']}"]
    assert res.billing_ended_s >= 55  # the 1-minute lease (from creation) ran out first
    assert res.facts["summary_names_the_lease"]  # launch said what ends this instance, not "it destroys itself"


def test_a_budget_reached_with_auto_shutdown_false_ends_gpu_billing(scenarios):
    res = chaos(scenarios, "budget_kept")
    beat = res.facts["heartbeat"]
    assert res.outcome == "stopped" and beat["state"] == "budget_exceeded" and beat["ending"] == "stopped"


def test_an_instance_lost_mid_provisioning_is_destroyed_by_the_last_step(scenarios):
    res = chaos(scenarios, "ssh_lost_provisioning")
    assert res.facts["unreachable"] and res.facts["cleanup_said"]  # not left to the 30-minute lease
    assert res.outcome == "destroyed"
