"""Fleets: N runs launched side by side by Ansible forks, then torn down by name."""

from __future__ import annotations

import json
import os

from ctl_support import REPO, instances

LAUNCH = ["-e", "config=tiny", "-e", "provision=false"]


def test_fleet_of_four_launches_in_parallel_and_tears_down(ansible, emulator, tmp_path):
    single = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-solo")
    assert single.rc == 0, single.out
    fleet = ansible.playbook("launch.yml", *LAUNCH, "-e", "run_name=ctl-fleet", "-e", "count=4")
    assert fleet.rc == 0, fleet.out

    rows = instances(emulator, "ctl-fleet-")
    assert sorted(r["label"] for r in rows) == [f"ctl-fleet-{i}" for i in range(1, 5)]
    assert all(r["actual_status"] == "running" for r in rows)
    assert len({r["id"] for r in rows}) == 4
    # How much faster than one after another is a benchmark's (vast_emulator.bench, docs/benchmarks.md), not
    # a timed assert on a loaded CI box (it failed at 7x there with the e2e session beside it); recorded only.
    _record("fleet4_vs_single", {"single_s": round(single.seconds, 1), "fleet4_s": round(fleet.seconds, 1),
                                 "ratio": round(fleet.seconds / single.seconds, 2)})

    down = ansible.playbook("playbooks/teardown.yml", "-e", "run=ctl-fleet")
    assert down.rc == 0, down.out
    assert instances(emulator, "ctl-fleet") == []
    assert [r["label"] for r in instances(emulator, "ctl-solo")] == ["ctl-solo"], "teardown touched another run"


def test_sweep_file_gives_each_run_its_overrides(ansible, emulator, tmp_path):
    sweep = tmp_path / "lr.yaml"
    sweep.write_text("config: tiny\nruns:\n  - overrides: {operator.lr: 0.001}\n  - overrides: {operator.lr: 0.003}\n")
    dry = ansible.playbook("launch.yml", "-e", "provision=false", "-e", f"sweep={sweep}", "-e", "run_name=ctl-sweep",
                           "--check", "-v")
    assert dry.rc == 0, dry.out
    assert "ctl-sweep-1" in dry.out and "ctl-sweep-2" in dry.out and "ctl-sweep-3" not in dry.out
    assert "operator.lr: 0.003" in dry.out
    assert instances(emulator, "ctl-sweep") == []

    bad = tmp_path / "bad.yaml"
    bad.write_text("config: tiny\nruns:\n  - overides: {operator.lr: 0.001}\n")
    rejected = ansible.playbook("launch.yml", "-e", "provision=false", "-e", f"sweep={bad}", "--check")
    assert rejected.rc != 0 and "expected top-level keys config" in rejected.out


def _record(name: str, data: dict) -> None:
    """Measurements for people (.cache/measurements/control_plane.json, git-ignored); asserts stay in the test."""
    path = REPO / ".cache" / "measurements" / "control_plane.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current[name] = data
    path.write_text(json.dumps(current, indent=1) + os.linesep)
