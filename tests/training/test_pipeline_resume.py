"""Resuming: after a kill, from the bucket on a fresh machine, and across 2 DDP processes.

The reference is one uninterrupted autoencoder run; every other way of getting to its last step must
end with the same weights.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pipeline_support import (
    REPO,
    TINY_CONFIG,
    assert_same_weights,
    clean_env,
    final_weights,
    generate_tiny_data,
    run_cli,
    run_in_process,
    tiny_config_dict,
    write_config,
)

from training.store.bucket import ObjectStore

STAGE = "autoencoder"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_tiny_data(tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        assert run_in_process(TINY_CONFIG, run_dir, data_dir, STAGE) == 0
    return run_dir


def _args(run_dir: Path, data_dir: Path) -> list[str]:
    return ["--config", str(TINY_CONFIG), "--stage", STAGE, "--run-dir", str(run_dir), "--data-dir", str(data_dir)]


def test_killed_run_resumes_to_the_same_weights(tmp_path, data_dir, uninterrupted):
    killed = run_cli(_args(tmp_path, data_dir), clean_env(TRAIN_FAIL_AT_STAGE=STAGE))
    assert killed.returncode == 1
    assert killed.stdout.rstrip().splitlines()[-1].startswith(
        "PIPELINE FAILED stage=autoencoder: InjectedFailure: TRAIN_FAIL_AT_STAGE=autoencoder: injected failure at step 30/60")
    partial = torch.load(tmp_path / "checkpoints" / STAGE / "last.pt", weights_only=True)
    assert partial["step"] == 30 and not partial["final"]
    assert set(partial["rng"]) >= {"python", "numpy", "torch"} and "optimizer" in partial and "scheduler" in partial
    status = (tmp_path / "status.json").read_text()
    assert '"state": "failed"' in status and "InjectedFailure" in status

    resumed = run_cli(_args(tmp_path, data_dir), clean_env())
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "[autoencoder] resuming autoencoder/last.pt at step 30/60" in resumed.stdout
    assert_same_weights(final_weights(tmp_path, STAGE), final_weights(uninterrupted, STAGE))


def test_preempted_run_continues_from_the_bucket_elsewhere(tmp_path, data_dir, uninterrupted, b2_env):
    first_machine, second_machine = tmp_path / "first", tmp_path / "second"
    killed = run_cli(_args(first_machine, data_dir), clean_env(TRAIN_FAIL_AT_STAGE=STAGE, TRAIN_RUN_NAME="pre-1",
                                                               **b2_env))
    assert killed.returncode == 1, killed.stdout[-2000:]
    store = ObjectStore.from_env(b2_env)
    assert [o.key for o in store.list("runs/pre-1/")] == ["runs/pre-1/checkpoints/autoencoder/last.pt"]
    shutil.rmtree(first_machine)  # the machine is gone

    resumed = run_cli(_args(second_machine, data_dir), clean_env(TRAIN_RUN_NAME="pre-1", **b2_env))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "fetched checkpoints from the bucket: autoencoder/last.pt" in resumed.stdout
    assert "resuming autoencoder/last.pt at step 30/60" in resumed.stdout
    assert_same_weights(final_weights(second_machine, STAGE), final_weights(uninterrupted, STAGE))
    keys = {o.key for o in store.list("runs/pre-1/")}
    assert {"runs/pre-1/checkpoints/autoencoder/final.pt", "runs/pre-1/checkpoints/autoencoder/final.json"} <= keys
    assert b2_env["B2_APP_KEY"] not in resumed.stdout + resumed.stderr


def test_two_ddp_processes_match_one(tmp_path, data_dir):
    """2 gloo processes under torchrun vs 1 process, 4 steps of the tiny autoencoder."""
    raw = tiny_config_dict()
    raw["autoencoder"].update(steps=4, warmup_steps=2, log_every=2, ckpt_every=2)
    config = write_config(tmp_path / "short.yaml", raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        assert run_in_process(config, tmp_path / "single", data_dir, STAGE) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["--config", str(config), "--stage", STAGE, "--run-dir", str(tmp_path / "ddp"), "--data-dir", str(data_dir)]
    result = run_cli(args, clean_env(), launcher=launcher)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("PIPELINE STARTED") == 1  # rank 0 alone writes
    assert "runtime: device=cpu world_size=2 bf16=False compile=False" in result.stdout
    # Each rank takes half of the same global batch, so the averaged gradient is the one-process gradient
    # up to float summation order. Adam's first steps move every weight by ~lr whatever its gradient's
    # size, so a weight whose gradient is ~0 can flip direction on rounding: hence atol ~ lr/10, not 1e-7.
    # (Over 60 steps training is chaotic enough that the two runs drift apart by ~1e-2.)
    assert_same_weights(final_weights(tmp_path / "ddp", STAGE), final_weights(tmp_path / "single", STAGE), atol=5e-4)


def test_sigterm_saves_a_checkpoint_and_reports_failure(tmp_path, data_dir):
    """A supervisor's SIGTERM mid-training: the step finishes, last.pt is saved, the run says why it ended."""
    raw = tiny_config_dict()
    raw["autoencoder"].update(steps=100000, log_every=1000, ckpt_every=100000)  # would run for minutes
    config = write_config(tmp_path / "long.yaml", raw)
    command = [sys.executable, "-m", "training", "run", *_args(tmp_path / "run", data_dir)]
    command[command.index(str(TINY_CONFIG))] = str(config)
    process = subprocess.Popen(command, env=clean_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    status_path = tmp_path / "run" / "status.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if status_path.is_file() and json.loads(status_path.read_text()).get("step", 0) > 5:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out[-2000:] + err[-2000:]
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("PIPELINE FAILED stage=autoencoder: Terminated: received SIGTERM; saved autoencoder/last.pt")
    saved = torch.load(tmp_path / "run" / "checkpoints" / STAGE / "last.pt", weights_only=True)
    assert saved["step"] > 5 and not saved["final"]
    assert json.loads(status_path.read_text())["state"] == "failed"
