"""training.evaluation.inference: a trained run loaded from its checkpoints alone, rolled out from an initial
condition.

The loaded model must be the trained one: its one-step error on the val split equals what the operator
stage itself measured (stages.json). Rollouts come back in physical units, numpy in numpy out, and a
refined method draws the same noise for the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_support import generate_tiny_data
from trained_run import small_config, train_run

from training.data import load_burgers
from training.evaluation.inference import TrainedSurrogate
from training.evaluation.metrics import nrmse


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inference")
    data_dir = generate_tiny_data(root / "data")
    config = small_config(root / "small.yaml", stages=["autoencoder", "cache", "operator", "diffusion"])
    assert train_run(config, root / "run", data_dir, run_name="tiny-inference") == 0
    return root / "run", data_dir


def test_loaded_operator_is_the_trained_one(run):
    run_dir, data_dir = run
    model = TrainedSurrogate.load(run_dir, device="cpu")
    val = torch.from_numpy(load_burgers(data_dir / "burgers1d_val_000.h5").u)
    inputs, targets = val[:, :-1].reshape(-1, val.shape[-1]), val[:, 1:].reshape(-1, val.shape[-1])
    measured = json.loads((run_dir / "metrics" / "stages.json").read_text())["stages"]["operator"]["metrics"]
    assert float(nrmse(model.method.one_step(inputs), targets)) == pytest.approx(
        measured["one_step_nrmse_val"], rel=1e-5)
    assert model.dt == pytest.approx(0.05) and model.resolution == 32 and model.data["nu"] == pytest.approx(0.01)


def test_rollout_returns_physical_frames_from_u0(run):
    run_dir, data_dir = run
    model = TrainedSurrogate.load(run_dir)
    test = load_burgers(data_dir / "burgers1d_test_000.h5").u
    frames = model.rollout(test[:, 0], steps=6)
    assert isinstance(frames, np.ndarray) and frames.shape == (test.shape[0], 7, 32)
    assert np.array_equal(frames[:, 0], test[:, 0]) and np.isfinite(frames).all()
    # physical units: the predicted fields have the data's scale, not the latent's normalised one
    assert 0.3 < frames[:, 1:].std() / test[:, 1:7].std() < 3
    single = model.rollout(torch.from_numpy(test[0, 0]), steps=6)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 7, 32)
    assert torch.allclose(single[0], torch.from_numpy(frames[0]), atol=1e-5)


def test_refined_rollout_is_seeded(run):
    run_dir, data_dir = run
    u0 = load_burgers(data_dir / "burgers1d_test_000.h5").u[:2, 0]
    a = TrainedSurrogate.load(run_dir, method="operator+diffusion", seed=3)
    b = TrainedSurrogate.load(run_dir, method="operator+diffusion", seed=3)
    c = TrainedSurrogate.load(run_dir, method="operator+diffusion", seed=4)
    first = a.rollout(u0, 4)
    assert np.array_equal(first, a.rollout(u0, 4)) and np.array_equal(first, b.rollout(u0, 4))
    assert not np.allclose(first, c.rollout(u0, 4))
    assert a.method.evaluations_per_step > 1


def test_wrong_inputs_say_what_is_allowed(run):
    run_dir, _ = run
    model = TrainedSurrogate.load(run_dir)
    with pytest.raises(ValueError, match="u0 has 64 grid points; operator was trained on 32"):
        model.rollout(np.zeros(64, dtype=np.float32), 2)
    with pytest.raises(ValueError, match=r"method 'operator\+student1': this run has .*operator\+diffusion"):
        TrainedSurrogate.load(run_dir, method="operator+student1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rollout_on_gpu_matches_cpu(run):
    run_dir, data_dir = run
    u0 = load_burgers(data_dir / "burgers1d_test_000.h5").u[:, 0]
    cpu = TrainedSurrogate.load(run_dir, device="cpu").rollout(u0, 5)
    gpu = TrainedSurrogate.load(run_dir, device="cuda").rollout(u0, 5)
    assert np.allclose(cpu, gpu, atol=1e-3)
