"""W&B the W&B way: group, job_type, tags, launch facts, per-stage step axes and alerts.

The decisions are unit-tested; the records are read back from what the real wandb package wrote in
offline mode (its transaction log, `run-<id>.wandb`), after a pipeline run that fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline_support import REPO, clean_env, generate_tiny_data, run_cli
from trained_run import small_config
from wandb.proto import wandb_internal_pb2 as pb

from run_contract import LAUNCH_FACTS_ENV, RUN_GROUP_ENV
from training.run.alert import main as alert_main
from training.run.pipeline import _alert
from training.run.stopping import Terminated
from training.run.wandb_run import WandbRun, job_type_for, launch_facts, run_group, tags_for

LAUNCH = {LAUNCH_FACTS_ENV["gpu"]: "RTX 4090", LAUNCH_FACTS_ENV["dph"]: "0.42",
          LAUNCH_FACTS_ENV["interruptible"]: "1", LAUNCH_FACTS_ENV["commit"]: "0123abcd"}


def test_launch_facts_are_typed_and_only_those_present():
    assert launch_facts({**LAUNCH, LAUNCH_FACTS_ENV["num_gpus"]: ""}) == {
        "gpu": "RTX 4090", "dph": 0.42, "interruptible": True, "commit": "0123abcd"}
    assert launch_facts({LAUNCH_FACTS_ENV["dph"]: "cheap"}) == {}  # malformed: left out, never fatal
    assert launch_facts({}) == {}


def test_group_job_type_and_tags():
    assert run_group({RUN_GROUP_ENV: "sweep-lr"}) == "sweep-lr" and run_group({}) is None
    assert job_type_for(["evaluate"]) == "evaluate" and job_type_for(["autoencoder", "evaluate"]) == "train"
    assert tags_for("burgers32", {"gpu": "H100", "interruptible": False}) == ["config:burgers32", "gpu:H100",
                                                                             "on-demand"]
    assert tags_for("tiny", {}) == ["config:tiny"]


class _Recorder(WandbRun):
    def __init__(self) -> None:
        super().__init__(None, "disabled")
        self.alerts: list[tuple[str, str, str]] = []

    def alert(self, title: str, text: str, level: str = "ERROR") -> None:
        self.alerts.append((title, text, level))


def test_a_stop_warns_and_a_failure_is_an_error():
    recorder = _Recorder()
    _alert(recorder, "fleet-1", "operator", Terminated("received SIGTERM"), "Terminated: received SIGTERM")
    _alert(recorder, "fleet-1", "operator", ValueError("bad"), "ValueError: bad")
    (stop_title, stop_text, stop_level), (fail_title, _, fail_level) = recorder.alerts
    assert (stop_title, stop_level) == ("fleet-1 stopped in operator", "WARN") and "budget stop" in stop_text
    assert (fail_title, fail_level) == ("fleet-1 failed in operator", "ERROR")


def wandb_records(path: Path) -> list[pb.Record]:
    """The records of a W&B transaction log (LevelDB log format: 32 KiB blocks of CRC, length, type, data)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # a block's padding
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL, FIRST start a record
        if kind in (1, 4):  # FULL, LAST end it
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_offline_run_is_grouped_tagged_and_alerts_on_failure(tmp_path):
    generate_tiny_data(tmp_path / "data")
    config = small_config(tmp_path / "c.yaml", stages=["autoencoder"], autoencoder={"steps": 10})
    env = clean_env(WANDB_MODE="offline", WANDB_SILENT="true", TRAIN_RUN_NAME="fleet-2", TRAIN_FAIL_AT_STAGE="autoencoder",
                    **{RUN_GROUP_ENV: "fleet"}, **LAUNCH)
    result = run_cli(["--config", str(config), "--run-dir", str(tmp_path)], env)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-fleet-2.wandb")
    records = wandb_records(log)
    by_kind: dict[str, list] = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        by_kind.setdefault(kind, []).append(getattr(record, kind))
    (run,) = by_kind["run"]
    assert (run.run_group, run.job_type) == ("fleet", "train")
    assert list(run.tags) == ["config:tiny", "gpu:RTX 4090", "interruptible"]
    config_items = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config_items["launch"] == {"gpu": "RTX 4090", "dph": 0.42, "interruptible": True, "commit": "0123abcd",
                                      "world_size": 1}
    assert config_items["seed"] == 0 and config_items["autoencoder"]["steps"] == 10
    axes = {(m.glob_name or m.name, m.step_metric) for m in by_kind["metric"]}
    assert ("autoencoder/*", "autoencoder/step") in axes
    (alert,) = by_kind["alert"]
    assert alert.title == "fleet-2 failed in autoencoder" and alert.level == "ERROR"
    assert "InjectedFailure" in alert.text
    assert by_kind["exit"][0].exit_code == 1


def test_an_alert_from_outside_resumes_the_run_and_keeps_its_ending(tmp_path):
    # The instance agent's alert at the end of the billing, in a fresh process as the agent runs it: the same
    # W&B run (its id is the run name's), a failed run finishing as failed again.
    config = small_config(tmp_path / "c.yaml", stages=["autoencoder"], autoencoder={"steps": 10})
    code = ("from pathlib import Path; from training.run.alert import send_alert; "
            f"send_alert(config=Path({str(config)!r}), run_name='fleet-3', title='fleet-3: instance destroyed', "
            "text='run failed: synced, destroyed (auto_shutdown)', level='WARN', "
            f"run_dir=Path({str(tmp_path)!r}), failed=True)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(WANDB_MODE="offline",
                          WANDB_SILENT="true"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-fleet-3.wandb")
    by_kind: dict[str, list] = {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        by_kind.setdefault(kind, []).append(getattr(record, kind))
    (run,) = by_kind["run"]
    assert run.run_id == "fleet-3"
    (alert,) = by_kind["alert"]
    assert (alert.title, alert.level) == ("fleet-3: instance destroyed", "WARN") and "synced, destroyed" in alert.text
    assert by_kind["exit"][0].exit_code == 1


def test_an_offline_alert_is_skipped_and_says_why(tmp_path, monkeypatch, capsys):
    config = small_config(tmp_path / "c.yaml", stages=["autoencoder"], autoencoder={"steps": 10})
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    assert alert_main(["--config", str(config), "--run-name", "r", "--title", "t", "--text", "x"]) == 0
    assert "an alert needs an online run" in capsys.readouterr().err
    assert not (tmp_path / "wandb").exists()  # nothing written that the destroy would lose
