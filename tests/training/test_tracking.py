"""W&B mode selection, an offline W&B run through the real CLI, status.json while running, the LR schedule."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_support import REPO, TINY_CONFIG, clean_env, generate_tiny_data, run_cli

from training.config import TrainLoopConfig
from training.optim.schedule import BatchDraw, lr_factor
from training.run.wandb_run import run_id_for, wandb_mode


@pytest.mark.parametrize(("env", "mode"), [
    ({}, "offline"),
    ({"WANDB_API_KEY": "k" * 40}, "online"),
    ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "disabled"}, "disabled"),
    ({"WANDB_MODE": "offline"}, "offline"),
])
def test_wandb_mode(env, mode):
    assert wandb_mode(env) == mode


def test_run_id_is_stable_and_safe():
    assert run_id_for("burgers32 / try#2") == run_id_for("burgers32 / try#2") == "burgers32---try-2"


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainLoopConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(step, cfg) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_batch_draw_splits_one_global_batch_across_ranks():
    whole = BatchDraw(7, 3, 8, 0, 1, "cpu").randint(1000)
    halves = [BatchDraw(7, 3, 8, rank, 2, "cpu").randint(1000) for rank in (0, 1)]
    assert whole.tolist() == halves[0].tolist() + halves[1].tolist()
    with pytest.raises(ValueError, match="not divisible by the 3 DDP processes"):
        BatchDraw(7, 3, 8, 0, 3, "cpu")


def test_offline_wandb_run_dir_is_announced(tmp_path):
    generate_tiny_data(tmp_path / "data")
    env = clean_env()
    env.pop("WANDB_MODE")  # no key, no mode: offline
    env["WANDB_SILENT"] = "true"
    result = run_cli(["--config", str(TINY_CONFIG), "--stage", "autoencoder", "--run-dir", str(tmp_path)], env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PIPELINE STARTED"))
    offline_dir = Path(line.split("wandb=", 1)[1])
    assert offline_dir.parent == tmp_path / "wandb" and offline_dir.name.startswith("offline-run-")
    assert offline_dir.is_dir()
    assert json.loads((tmp_path / "status.json").read_text())["wandb_url"] == str(offline_dir)


def test_status_json_follows_a_running_stage(tmp_path):
    """Poll status.json while the pipeline runs: it must show the stage and a growing step."""
    generate_tiny_data(tmp_path / "data")
    command = [sys.executable, "-m", "training", "run", "--config", str(TINY_CONFIG), "--stage", "autoencoder",
               "--run-dir", str(tmp_path)]
    process = subprocess.Popen(command, env=clean_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                status = json.loads((tmp_path / "status.json").read_text())
                seen.append((status["stage"], status["step"], status["state"]))
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read().decode()[-2000:]
    running_steps = [step for stage, step, state in seen if stage == "autoencoder" and state == "running"]
    assert running_steps and max(running_steps) > 0
    final = json.loads((tmp_path / "status.json").read_text())
    assert (final["stage"], final["step"], final["total_steps"], final["state"]) == ("autoencoder", 60, 60, "done")
