"""configs/ks_tiny.yaml trains through the autoencoder stage on KS data from the real generator (CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.data import DataFileError
from training.data.generate import generate_dataset
from training.data.ks_dataset import KsSpec
from training.run.pipeline import PipelineOptions, run_pipeline
from training.store.datafiles import plan_data

REPO = Path(__file__).resolve().parents[3]
KS_TINY = REPO / "configs" / "ks_tiny.yaml"


def test_ks_tiny_config_trains_the_autoencoder_on_ks_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = load_config(KS_TINY)
    spec = KsSpec(resolution=32, solver_resolution=64, frames=11, burn_in=4.0)  # as the config's comment says
    written = {r.path.name for r in generate_dataset(spec, 40, tmp_path / "data")}
    assert written == {*cfg.data.train, *cfg.data.val, *cfg.data.test}
    options = PipelineOptions(config_path=KS_TINY, stage="autoencoder", run_dir=tmp_path / "run",
                              data_dir=tmp_path / "data", reset_cache=True)
    assert run_pipeline(options) == 0
    stages = json.loads((tmp_path / "run" / "metrics" / "stages.json").read_text())["stages"]
    result = stages["autoencoder"]
    assert result["steps"] == cfg.autoencoder.steps
    assert result["metrics"]["final_loss"] < result["metrics"]["first_loss"]  # it learned something
    assert 0 < result["metrics"]["recon_nrmse_val"] < 1.0
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "autoencoder" / "final.pt", weights_only=False)
    assert checkpoint["config"]["data"]["equation"] == "ks"  # the checkpoint says what it was trained on


def test_a_burgers_config_refuses_ks_files_by_what_they_hold(tmp_path):
    """The files say which equation they hold: a config for the other one is refused before any training."""
    spec = KsSpec(resolution=32, solver_resolution=64, frames=11, burn_in=4.0)
    generate_dataset(spec, 12, tmp_path / "data")
    as_burgers = tmp_path / "ks_as_burgers.yaml"
    as_burgers.write_text(KS_TINY.read_text().replace("equation: ks", "equation: burgers").replace("nu: null", "nu: 0.01"))
    with pytest.raises(DataFileError, match=r"a ks dataset, but the config's data.equation is 'burgers'"):
        plan_data(load_config(as_burgers), tmp_path / "data")
