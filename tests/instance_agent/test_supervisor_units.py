"""The supervisor's pure parts: policy validation, budget, marker lines, rclone env, requirements, ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instance_agent.artifacts import artifact_paths
from instance_agent.budget import Budget
from instance_agent.heartbeat import Heartbeat, read_heartbeat, write_heartbeat
from instance_agent.pipeline import parse_marker
from instance_agent.policy import PolicyError, load_policy, policy_from_dict
from instance_agent.rclone import BucketConfigError, rclone_env
from instance_agent.requirements import instance_requirements, requirement_name
from instance_agent.supervisor import pipeline_command, pipeline_env

B2 = {"B2_KEY_ID": "kid", "B2_APP_KEY": "sekrit", "B2_S3_ENDPOINT": "https://s3.example", "B2_BUCKET": "bkt"}


def policy(**over):
    return policy_from_dict({"run_name": "r1", "train_config": "configs/tiny.yaml", **over})


class TestPolicy:
    def test_defaults_and_types(self):
        p = policy(max_runtime_hours=2, dph=0.5, max_cost=3)
        assert p.max_runtime_hours == 2.0 and isinstance(p.max_runtime_hours, float)
        assert p.artifact_prefix() == "runs/r1"
        assert p.auto_shutdown is True and p.train_stage == "all" and p.reset_cache == 1

    @pytest.mark.parametrize("raw, needle", [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"max_runtime_hours": "2"}, "max_runtime_hours: expected float, got str"),
        ({"auto_shutdown": "yes"}, "auto_shutdown: expected bool"),
        ({"max_runtime_hours": 0}, "max_runtime_hours: must be > 0"),
        ({"max_cost": 5.0}, "max_cost: needs dph"),
        ({"reset_cache": 2}, "reset_cache: expected 0 or 1"),
        ({"run_name": "a b"}, "run_name:"),
        ({"train_config": "/etc/passwd"}, "train_config:"),
        ({"train_config": "../x.yaml"}, "train_config:"),
        ({"pipeline_env": {"WANDB_API_KEY": "x"}}, "pipeline_env.WANDB_API_KEY: looks like a secret"),
        ({"pipeline_env": {"X": 1}}, "pipeline_env: expected a mapping of names to strings"),
    ])
    def test_bad_input_names_the_key(self, raw, needle):
        with pytest.raises(PolicyError, match=needle.replace("(", r"\(")):
            policy(**raw)

    def test_required_key(self):
        with pytest.raises(PolicyError, match="train_config: required key missing"):
            policy_from_dict({"run_name": "x"})

    def test_load_names_the_file(self, tmp_path: Path):
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"run_name": "r", "train_config": "c.yaml", "nope": 1}))
        with pytest.raises(PolicyError, match=f"{path}: nope: unknown key"):
            load_policy(path)
        with pytest.raises(PolicyError, match="policy file not found"):
            load_policy(tmp_path / "missing.json")


class TestBudget:
    def test_runtime(self):
        budget = Budget(max_runtime_hours=0.01)
        assert budget.exceeded(35.9) is None
        assert "max_runtime_hours=0.01 exceeded after 36s" in budget.exceeded(36.0)

    def test_cost(self):
        budget = Budget(max_runtime_hours=10, max_cost=1.0, dph=2.0)
        assert budget.cost_so_far(900) == 0.5
        assert budget.exceeded(1799) is None
        assert "max_cost=$1 reached" in budget.exceeded(1800)

    def test_unknown_price_has_no_cost(self):
        assert Budget(max_runtime_hours=1).cost_so_far(100) is None


class TestMarkers:
    def test_started(self):
        marker = parse_marker("PIPELINE STARTED run=r1 stages=autoencoder,cache wandb=https://wandb.ai/e/p/runs/x\n")
        assert marker.kind == "started"
        assert marker.fields == {"run": "r1", "stages": "autoencoder,cache", "wandb": "https://wandb.ai/e/p/runs/x"}

    def test_failed_splits_stage_and_message(self):
        marker = parse_marker("2026 INFO PIPELINE FAILED stage=operator: boom: at step 3")
        assert marker.kind == "failed"
        assert marker.fields == {"stage": "operator"} and marker.message == "boom: at step 3"

    def test_finished_and_other_lines(self):
        assert parse_marker("PIPELINE FINISHED ok").kind == "finished"
        assert parse_marker("step 10 loss 0.3") is None


class TestRcloneEnv:
    def test_maps_b2_vars_and_drops_ca_bundle(self):
        env = rclone_env({**B2, "AWS_CA_BUNDLE": "/x.pem", "PATH": "/bin", "RCLONE_CONFIG_OLD_TYPE": "s3"})
        assert env["RCLONE_CONFIG_B2_TYPE"] == "s3"
        assert env["RCLONE_CONFIG_B2_SECRET_ACCESS_KEY"] == "sekrit"
        assert env["RCLONE_CONFIG_B2_ACCESS_KEY_ID"] == "kid"
        assert env["RCLONE_CONFIG_B2_ENDPOINT"] == "https://s3.example"
        assert env["RCLONE_CONFIG"] == "/dev/null"
        assert "AWS_CA_BUNDLE" not in env and "RCLONE_CONFIG_OLD_TYPE" not in env
        assert env["PATH"] == "/bin"

    def test_missing_vars_are_named_without_values(self):
        with pytest.raises(BucketConfigError, match="missing B2_APP_KEY, B2_BUCKET") as info:
            rclone_env({"B2_KEY_ID": "kid", "B2_S3_ENDPOINT": "e"})
        assert "kid" not in str(info.value)


class TestMisc:
    def test_requirements_leave_torch_and_controller_tools_out(self, tmp_path: Path):
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname="x"\ndependencies=["torch==2.13.0","Ansible_Core>=2","h5py>=3","vastai>=1.9,<2"]\n')
        assert instance_requirements(tmp_path / "pyproject.toml") == ["h5py>=3", "vastai>=1.9,<2"]
        assert requirement_name("Ansible_Core >= 2") == "ansible-core"

    def test_real_pyproject_keeps_what_the_instance_imports(self):
        names = {requirement_name(r) for r in instance_requirements(Path("pyproject.toml"))}
        assert {"vastai", "h5py", "pyyaml", "boto3"} <= names and "torch" not in names

    def test_artifact_paths(self, tmp_path):
        for name in ("logs/a.log", "metrics/m.json", "status.json", "checkpoints/op/last.pt",
                     "checkpoints/op/.last.pt.x.tmp", "data/train.h5", "training/x.py", "wandb/.hidden/f"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("x")
        light = {str(p) for p in artifact_paths(tmp_path, include_checkpoints=False)}
        assert light == {"logs/a.log", "metrics/m.json", "status.json"}
        full = {str(p) for p in artifact_paths(tmp_path, include_checkpoints=True)}
        assert full == light | {"checkpoints/op/last.pt"}

    def test_pipeline_env_and_command(self):
        p = policy(pipeline_env={"TRAIN_FAIL_AT_STAGE": "operator"}, reset_cache=0)
        env = pipeline_env(p, {"CONTAINER_API_KEY": "k", "WANDB_API_KEY": "w", "TRAIN_CONFIG": "old"})
        assert "CONTAINER_API_KEY" not in env and env["WANDB_API_KEY"] == "w"
        assert env["TRAIN_CONFIG"] == "configs/tiny.yaml" and env["RESET_CACHE"] == "0"
        assert env["TRAIN_DATA_DIR"] == "/workspace/universal_simulator/data"
        assert env["TRAIN_FAIL_AT_STAGE"] == "operator"
        assert pipeline_command(p)[1:] == ["-m", "training", "run", "--config", "configs/tiny.yaml", "--stage", "all"]

    def test_heartbeat_roundtrip(self, tmp_path: Path):
        beat = Heartbeat(pid=1, run_name="r", started_at="t0", updated_at="t0", state="failed")
        write_heartbeat(tmp_path / "hb.json", beat)
        back = read_heartbeat(tmp_path / "hb.json")
        assert back.is_final and back.updated_at != "t0"
        (tmp_path / "bad.json").write_text("{not json")
        assert read_heartbeat(tmp_path / "bad.json") is None
