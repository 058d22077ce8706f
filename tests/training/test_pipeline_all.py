"""`python -m training run --stage all` on the tiny config, from scratch, through the real CLI.

One run (module fixture) is inspected from several angles: every stage trained (loss decreased,
finite outputs, checkpoint written), the contract lines, status.json, metrics.json and the plots.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pipeline_support import TINY_CONFIG, clean_env, generate_tiny_data, run_cli

TRAINED = ("autoencoder", "operator", "diffusion", "distill")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("all")
    generate_tiny_data(root / "run" / "data")
    result = run_cli(["--config", str(TINY_CONFIG), "--stage", "all", "--run-dir", str(root / "run")],
                     clean_env(TRAIN_RUN_NAME="tiny-all"))
    return root / "run", result


def test_all_finishes_with_contract_lines(finished_run):
    run_dir, result = finished_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    started = [line for line in result.stdout.splitlines() if line.startswith("PIPELINE STARTED")]
    assert started == ["PIPELINE STARTED run=tiny-all stages=autoencoder,cache,operator,diffusion,distill,evaluate "
                       "wandb=disabled"]
    assert result.stdout.rstrip().splitlines()[-1] == "PIPELINE FINISHED ok"
    assert "PIPELINE STARTED" in (run_dir / "logs" / "autoencoder.log").read_text()
    assert "PIPELINE FINISHED ok" in (run_dir / "logs" / "evaluate.log").read_text()


def test_status_json_says_done(finished_run):
    run_dir, _ = finished_run
    status = json.loads((run_dir / "status.json").read_text())
    assert set(status) >= {"run_name", "stage", "step", "total_steps", "loss", "samples_per_s", "eta_s", "state",
                           "error", "wandb_url", "updated_at"}
    assert status["state"] == "done" and status["error"] is None
    assert status["stage"] == "evaluate" and status["run_name"] == "tiny-all" and status["wandb_url"] == "disabled"


@pytest.mark.parametrize("stage", TRAINED)
def test_each_stage_trained_and_checkpointed(finished_run, stage):
    run_dir, _ = finished_run
    payload = torch.load(run_dir / "checkpoints" / stage / "final.pt", weights_only=True)
    assert payload["final"] and payload["step"] == payload["config"][stage]["steps"]
    assert payload["final_loss"] < payload["first_loss"], (stage, payload["first_loss"], payload["final_loss"])
    assert all(torch.isfinite(t.float()).all() for t in payload["models"]["model"].values())
    log = (run_dir / "logs" / f"{stage}.log").read_text()
    assert f"[{stage}] step {payload['step']}/{payload['step']} loss" in log and "samples/s" in log and "eta" in log
    assert not (run_dir / "checkpoints" / stage / "last.pt").exists()


def test_cache_written_with_key(finished_run):
    run_dir, _ = finished_run
    key = json.loads((run_dir / "cache" / "key.json").read_text())
    assert len(key["encoder_uid"]) == 32 and len(key["data_fingerprint"]) == 64
    latents = torch.load(run_dir / "cache" / "latents.pt", weights_only=True)["latents"]
    assert latents["train"].shape == (32, 11, 8, 8) and torch.isfinite(latents["test"]).all()


def test_metrics_json_covers_every_method(finished_run):
    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "metrics" / "metrics.json").read_text())
    methods = metrics["methods"]
    assert set(methods) == {"persistence", "fno", "operator", "operator+diffusion", "operator+student1",
                            "operator+student2"}
    for name, m in methods.items():
        for key in ("one_step_nrmse", "rollout_nrmse", "last_frame_nrmse"):
            assert math.isfinite(m[key]) and m[key] >= 0, (name, key)
        assert set(m["correlation_time"]) == {"0.8", "0.9", "0.95"}
        assert set(m["frmse"]) == {"low", "mid", "high"}
        assert len(m["nrmse_vs_lead"]) == 10
    assert methods["operator+diffusion"]["evaluations_per_step"] == 1 + 1 + (2 * 3 - 1)  # op, estimate, Heun
    assert methods["operator+student1"]["evaluations_per_step"] == 2
    assert methods["persistence"]["one_step_nrmse"] > 0
    assert 0 < metrics["autoencoder_recon_nrmse_test"] < 1
    table = (run_dir / "metrics" / "metrics.md").read_text()
    assert "| operator+student2 | 3 |" in table
    pngs = sorted(p.name for p in (run_dir / "metrics").glob("*.png"))
    assert "error_vs_lead.png" in pngs and "spacetime_operator.png" in pngs
    assert all((run_dir / "metrics" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_rerun_skips_finished_stages(finished_run, tmp_path):
    run_dir, _ = finished_run
    result = run_cli(["--config", str(TINY_CONFIG), "--run-dir", str(run_dir), "--no-reset-cache"],
                     clean_env(TRAIN_RUN_NAME="tiny-all"))
    assert result.returncode == 0, result.stdout[-2000:]
    for stage in (*TRAINED, "evaluate"):
        assert f"[{stage}] finished earlier (final checkpoint matches its inputs): skipped" in result.stdout
    assert "[cache] " in result.stdout and "is up to date (RESET_CACHE=0): kept" in result.stdout
