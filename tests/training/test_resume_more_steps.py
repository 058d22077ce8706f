"""Train longer, change the seed, and change test files: what a finished run dir allows and records.

"Train 20k more" is a raised `steps`: the final checkpoint is continued (not refused, not retrained) and
what depends on it retrains; a lower `steps` is refused; a seed override is recorded per trained segment;
the test files are no part of a trained model's data identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_support import assert_same_weights, final_weights, generate_tiny_data
from trained_run import small_config, train_run

from training.data.manifest import write_manifest
from training.data.writer import write_burgers_file
from training.run.paths import RunPaths
from training.store.checkpoint import save_checkpoint
from training.store.checkpoint_store import CheckpointStore

STAGES = ["autoencoder", "cache", "operator"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_tiny_data(tmp_path_factory.mktemp("more-steps") / "data")


def _config(path: Path, autoencoder_steps: int, operator_steps: int = 10) -> Path:
    return small_config(path, stages=STAGES, autoencoder={"steps": autoencoder_steps},
                        operator={"steps": operator_steps, "ckpt_every": 5, "log_every": 5})


def _checkpoint(run_dir: Path, stage: str) -> dict:
    return torch.load(run_dir / "checkpoints" / stage / "final.pt", weights_only=True)


def test_more_steps_continue_the_final_checkpoint_and_retrain_what_depends_on_it(tmp_path, data_dir, capsys):
    run_dir = tmp_path / "run"
    assert train_run(_config(tmp_path / "a20.yaml", 20), run_dir, data_dir, run_name="more") == 0
    first_ae, first_op = final_weights(run_dir, "autoencoder"), _checkpoint(run_dir, "operator")
    capsys.readouterr()

    assert train_run(_config(tmp_path / "a30.yaml", 30), run_dir, data_dir, run_name="more", seed=5) == 0
    out = capsys.readouterr().out
    assert "seed: 5 (overrides the config's 0; recorded in each checkpoint)" in out
    assert "[autoencoder] autoencoder.steps raised to 30: training its final checkpoint longer" in out
    assert "[autoencoder] training longer from autoencoder/final.pt at step 20/30 (seed 0 before, 5 from here on)" in out
    assert "[autoencoder] step 30/30" in out and "[autoencoder] step 10/30" not in out  # only the 10 new steps
    assert "[operator] final checkpoint is stale (autoencoder changed since it was made): training again" in out
    longer = _checkpoint(run_dir, "autoencoder")
    assert longer["step"] == 30 and longer["final"]
    assert longer["history"] == [{"from_step": 0, "to_step": 20, "seed": 0}, {"from_step": 20, "to_step": 30, "seed": 5}]
    marker = json.loads((run_dir / "checkpoints" / "autoencoder" / "final.json").read_text())
    assert marker["history"] == longer["history"] and marker["step"] == 30
    with pytest.raises(AssertionError):
        assert_same_weights(longer["models"]["model"], first_ae)
    operator = _checkpoint(run_dir, "operator")
    assert operator["upstream"]["autoencoder"] == longer["uid"] != first_op["upstream"]["autoencoder"]
    assert operator["history"] == [{"from_step": 0, "to_step": 10, "seed": 5}]

    # only the operator longer: the autoencoder is kept, the operator continues from its step 10
    assert train_run(_config(tmp_path / "o15.yaml", 30, 15), run_dir, data_dir, run_name="more", seed=5) == 0
    out = capsys.readouterr().out
    assert "[autoencoder] finished earlier (final checkpoint matches its inputs): skipped" in out
    assert "[operator] training longer from operator/final.pt at step 10/15" in out
    assert _checkpoint(run_dir, "autoencoder")["uid"] == longer["uid"]
    assert [s["to_step"] for s in _checkpoint(run_dir, "operator")["history"]] == [10, 15]

    # a lower steps is refused, naming the step reached
    assert train_run(_config(tmp_path / "a25.yaml", 25, 15), run_dir, data_dir, run_name="more", seed=5) == 1
    out = capsys.readouterr().out
    assert "PIPELINE FAILED stage=autoencoder: CheckpointError:" in out
    assert "trained to step 30, but autoencoder.steps is 25: training cannot be shortened" in out


def test_other_test_files_leave_trained_stages_valid(tmp_path, data_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for path in data_dir.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    config = small_config(tmp_path / "ae.yaml", stages=["autoencoder"], autoencoder={"steps": 10})
    assert train_run(config, tmp_path / "run", data, run_name="test-files") == 0
    before = final_weights(tmp_path / "run", "autoencoder")
    test_file = data / "burgers1d_test_000.h5"
    write_burgers_file(test_file, np.zeros((4, 11, 32), np.float32), (np.arange(32) + 0.5) / 32, 0.05, nu=0.01)
    write_manifest(data, [test_file])
    capsys.readouterr()
    assert train_run(config, tmp_path / "run", data, run_name="test-files") == 0
    assert "[autoencoder] finished earlier (final checkpoint matches its inputs): skipped" in capsys.readouterr().out
    assert_same_weights(final_weights(tmp_path / "run", "autoencoder"), before)


@pytest.mark.parametrize(("last_step", "kept"), [(70, True), (30, False)])
def test_fetched_last_checkpoint_is_kept_only_when_past_the_final(tmp_path, last_step, kept):
    """A run trained longer and preempted has last.pt beyond final.pt: a fresh machine must resume it."""
    paths = RunPaths(run_dir=tmp_path, data_dir=tmp_path / "data")
    folder = paths.stage_checkpoints("autoencoder")
    save_checkpoint(folder / "final.pt", {"step": 60, "config": {}})
    save_checkpoint(folder / "last.pt", {"step": last_step, "config": {}})
    CheckpointStore(paths, "r", is_main=True)._drop_superseded(["autoencoder"])
    assert (folder / "last.pt").is_file() is kept and (folder / "final.pt").is_file()
