"""PDE-Refiner (Lippe et al. 2023) beside the residual refiner: its levels and evaluation count (a wrapper
counts calls of the real network), and a tiny run of the pipeline with it enabled, end to end on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pipeline_support import generate_tiny_data, run_in_process, tiny_config_dict, write_config
from torch import nn

from training.config import ConfigError, OperatorConfig, PDERefinerConfig, config_from_dict, load_config
from training.models.operator import LatentStepper
from training.models.pderefiner import PDERefiner, pderefiner_loss, refinement_sigmas

LEVELS = 3
REFINER = {"enabled": True, "levels": LEVELS, "width": 32, "blocks": 2, "kernel_size": 3, "steps": 60,
           "batch_size": 32, "lr": 2.0e-3, "warmup_steps": 5, "ckpt_every": 20, "log_every": 10}


class CountingNet(nn.Module):
    """The real ConvResNet, counting its calls."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x, cond):
        self.calls += 1
        return self.net(x, cond)


def test_noise_levels_are_min_noise_to_the_k_over_k():
    sigmas = refinement_sigmas(4, 1e-6)
    assert sigmas.tolist() == pytest.approx([1e-6 ** (k / 4) for k in range(1, 5)], rel=1e-5)
    assert refinement_sigmas(0, 1e-6).numel() == 0


def test_first_estimate_is_one_evaluation_shaped_like_the_mse_operator_and_refinement_k_more():
    torch.manual_seed(0)
    model = PDERefiner(8, PDERefinerConfig(levels=LEVELS, width=16, blocks=1, kernel_size=3))
    counter = CountingNet(model.net)
    model.net = counter
    prev = torch.randn(5, 8, 8)
    first = model.predict(prev)
    assert counter.calls == 1
    assert first.shape == LatentStepper(8, OperatorConfig(width=16, blocks=1, kernel_size=3))(prev).shape
    counter.calls = 0
    refined = model.sample(prev, torch.Generator().manual_seed(0))
    assert counter.calls == LEVELS + 1 and refined.shape == prev.shape
    # Levels only nudge the estimate: each step moves it by about sigma_k (the untrained net predicts 0 noise).
    assert 0 < (refined - first).abs().max() < 10 * model.delta_std * model.sigmas[0]


def test_loss_regresses_the_change_at_k_zero_and_the_noise_above():
    torch.manual_seed(0)
    model = PDERefiner(4, PDERefinerConfig(levels=LEVELS, width=16, blocks=1, kernel_size=3))
    prev, target, noise = torch.randn(6, 4, 8), torch.randn(6, 4, 8), torch.randn(6, 4, 8)
    zero = torch.zeros(6, dtype=torch.long)
    # The untrained network outputs zeros: the loss is E[y^2] at k = 0 and E[eps^2] at k >= 1.
    with torch.no_grad():
        at_zero = float(pderefiner_loss(model, model.sigmas, prev, target, zero, noise))
        at_two = float(pderefiner_loss(model, model.sigmas, prev, target, zero + 2, noise))
    assert at_zero == pytest.approx(float((target**2).mean()), rel=1e-5)
    assert at_two == pytest.approx(float((noise**2).mean()), rel=1e-5)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("levels", 0, "diffusion.pderefiner.levels: must be >= 1"),
    ("min_noise", 1.5, r"diffusion.pderefiner.min_noise: must lie in \(0, 1\)"),
    ("bogus", 1, "diffusion.pderefiner.bogus: unknown key"),
])
def test_settings_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"diffusion": {"pderefiner": {key: value}}})


@pytest.fixture(scope="module")
def refiner_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pderefiner")
    generate_tiny_data(root / "data")
    raw = tiny_config_dict()
    raw["stages"] = ["autoencoder", "cache", "operator", "diffusion", "evaluate"]
    for section in ("autoencoder", "operator", "diffusion", "fno"):  # their quality is not under test here
        raw[section] = {**raw[section], "steps": 20, "ckpt_every": 10}
    raw["diffusion"]["pderefiner"] = REFINER
    raw["evaluate"] = {**raw["evaluate"], "plots": False, "ensemble_size": 2, "bootstrap_resamples": 100}
    config = write_config(root / "refiner.yaml", raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        assert run_in_process(config, root / "run", root / "data", run_name="tiny-pderefiner") == 0
    return root / "run"


def test_pipeline_trains_pderefiner_and_its_mse_baseline(refiner_run):
    cfg = load_config(refiner_run.parent / "refiner.yaml")
    z = torch.load(refiner_run / "cache" / "latents.pt", weights_only=True)["latents"]["train"]
    for name, levels in (("pderefiner", LEVELS), ("pderefiner_mse", 0)):
        payload = torch.load(refiner_run / "checkpoints" / "diffusion" / f"{name}_final.pt", weights_only=True)
        assert payload["final"] and payload["step"] == REFINER["steps"]
        assert all(torch.isfinite(t.float()).all() for t in payload["models"]["ema"].values())
        # Its k = 0 prediction beats the untrained one (persistence: an MSE of E[y^2] = 1 on the unit-std change).
        model = PDERefiner(cfg.autoencoder.latent_dim, cfg.diffusion.pderefiner, levels=levels)
        model.load_state_dict(payload["models"]["model"])
        x = model.normalise(z)
        prev, y = x[:, :-1].flatten(0, 1), (x[:, 1:] - x[:, :-1]).flatten(0, 1) / model.delta_std
        with torch.no_grad():
            k0 = pderefiner_loss(model, model.sigmas, prev, y, torch.zeros(len(y), dtype=torch.long), y)
        assert float((y**2).mean()) == pytest.approx(1.0, rel=1e-2) and float(k0) < 0.95, (name, float(k0))
    mse = torch.load(refiner_run / "checkpoints" / "diffusion" / "pderefiner_mse_final.pt", weights_only=True)
    assert mse["models"]["model"]["sigmas"].numel() == 0  # trained at k = 0 only: the MSE baseline
    assert (refiner_run / "checkpoints" / "diffusion" / "final.pt").is_file()  # the residual refiner too


def test_evaluation_scores_pderefiner_with_k_plus_one_evaluations(refiner_run):
    methods = json.loads((refiner_run / "metrics" / "metrics.json").read_text())["methods"]
    assert {"operator", "operator+diffusion", "pderefiner", "pderefiner-mse"} <= set(methods)
    assert methods["pderefiner"]["evaluations_per_step"] == LEVELS + 1
    assert methods["pderefiner-mse"]["evaluations_per_step"] == 1
    for name in ("pderefiner", "pderefiner-mse"):
        for key in ("one_step_nrmse", "rollout_nrmse"):
            assert math.isfinite(methods[name][key]) and methods[name][key] > 0, (name, key)


def test_trained_first_estimate_has_the_operators_shape(refiner_run):
    cfg = load_config(refiner_run.parent / "refiner.yaml")
    payload = torch.load(refiner_run / "checkpoints" / "diffusion" / "pderefiner_final.pt", weights_only=True)
    model = PDERefiner(cfg.autoencoder.latent_dim, cfg.diffusion.pderefiner)
    model.load_state_dict(payload["models"]["ema"])
    operator = LatentStepper(cfg.autoencoder.latent_dim, cfg.operator)
    operator.load_state_dict(torch.load(refiner_run / "checkpoints" / "operator" / "final.pt",
                                        weights_only=True)["models"]["model"])
    z = torch.load(refiner_run / "cache" / "latents.pt", weights_only=True)["latents"]["val"][:, 0]
    with torch.no_grad():
        assert model.predict(model.normalise(z)).shape == operator(operator.normalise(z)).shape == z.shape


def test_rerun_reuses_a_finished_refiner_and_retrains_one_from_another_autoencoder(refiner_run, monkeypatch):
    """The diffusion stage interrupted after PDE-Refiner: a rerun reuses what matches its upstream and
    retrains what was made from another autoencoder (train() alone would reuse it)."""
    folder = refiner_run / "checkpoints" / "diffusion"
    (folder / "final.pt").unlink()
    (folder / "final.json").unlink()
    marker = json.loads((folder / "pderefiner_final.json").read_text())
    marker["upstream"]["autoencoder"] = "0" * 32
    (folder / "pderefiner_final.json").write_text(json.dumps(marker))
    kept = torch.load(folder / "pderefiner_mse_final.pt", weights_only=True)["uid"]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log = refiner_run / "logs" / "diffusion.log"
    before = log.read_text() if log.is_file() else ""
    assert run_in_process(refiner_run.parent / "refiner.yaml", refiner_run, refiner_run.parent / "data",
                          stage="diffusion", run_name="tiny-pderefiner") == 0
    added = log.read_text()[len(before):]
    assert "pderefiner_final.pt was made from another autoencoder: training again" in added
    assert "diffusion/pderefiner_mse_final.pt exists: reusing it" in added
    assert torch.load(folder / "pderefiner_mse_final.pt", weights_only=True)["uid"] == kept
    fresh = json.loads((folder / "pderefiner_final.json").read_text())
    assert fresh["upstream"]["autoencoder"] != "0" * 32 and (folder / "final.pt").is_file()
