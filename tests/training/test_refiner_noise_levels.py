"""The residual refiner trains on noise levels that cover the levels its sampler actually visits.

The visited levels are read off the real sampler (a wrapper records every sigma the denoiser is
called at); the training draws come from the diffusion stage's own `noise_levels` with BatchDraw.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from pipeline_support import REPO
from torch import nn

from training.config import ConfigError, DiffusionConfig, config_from_dict, load_config
from training.models.diffusion import ResidualDenoiser, refine_evaluations, refine_sample, sampler_levels
from training.optim.schedule import BatchDraw
from training.stages.diffusion import noise_levels

WINDOW = 0.1  # |ln sigma - ln level| <= WINDOW counts as "at" a level
MIN_SHARE = 0.02  # every visited level gets at least this share of the training draws


class RecordingNet(nn.Module):
    """Wraps the real ResidualNet and records the noise level of every call (c_noise = ln(sigma) / 4)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.sigmas: list[float] = []

    def forward(self, x, c_noise, cond):
        self.sigmas.extend(float(s) for s in torch.exp(4 * c_noise).unique())
        return self.net(x, c_noise, cond)


def visited_levels(cfg: DiffusionConfig) -> tuple[list[float], int]:
    """Distinct sigmas the real refine_sample evaluates the denoiser at, and its number of calls."""
    torch.manual_seed(0)
    denoiser = ResidualDenoiser(4, dataclasses.replace(cfg, width=8, blocks=1, kernel_size=3))
    recorder = RecordingNet(denoiser.net)
    denoiser.net = recorder
    cond = torch.randn(3, 8, 8)
    refine_sample(denoiser, cond, (torch.randn(3, 4, 8), torch.randn(3, 4, 8)), cfg)
    return sorted({round(s, 6) for s in recorder.sigmas}, reverse=True), len(recorder.sigmas)


def training_draws(cfg: DiffusionConfig, steps: int = 40, batch: int = 512) -> torch.Tensor:
    return torch.cat([noise_levels(BatchDraw(0, step, batch, 0, 1, torch.device("cpu")), cfg)
                      for step in range(steps)])


def share_at(draws: torch.Tensor, level: float) -> float:
    return float(((draws.log() - math.log(level)).abs() <= WINDOW).float().mean())


CONFIGS = {name: load_config(REPO / "configs" / f"{name}.yaml").diffusion for name in ("burgers32", "tiny")}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_sampler_visits_exactly_the_levels_training_draws_from(name):
    cfg = CONFIGS[name]
    levels, calls = visited_levels(cfg)
    assert levels == pytest.approx(sampler_levels(cfg).tolist(), rel=1e-4)
    assert levels[0] == pytest.approx(cfg.sigma_max) and min(levels) == pytest.approx(cfg.sigma_min)
    assert calls == refine_evaluations(cfg)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_visited_level_gets_a_fair_share_of_training_draws(name):
    cfg = CONFIGS[name]
    draws = training_draws(cfg)
    assert (draws >= cfg.sigma_min * 0.999).all() and torch.isfinite(draws).all()
    for level in visited_levels(cfg)[0]:
        assert share_at(draws, level) >= MIN_SHARE, (name, level, share_at(draws, level))
    # The mid range EDM found most useful keeps a large share too.
    assert float(((draws > 0.05) & (draws < 2.0)).float().mean()) > 0.3


def test_plain_edm_log_normal_misses_the_first_estimate_and_the_finest_levels():
    """The same check fails for EDM's log-normal alone: the reason the mixture exists."""
    cfg = dataclasses.replace(CONFIGS["burgers32"], sigma_uniform_weight=0.0, sigma_sampler_weight=0.0)
    draws = training_draws(cfg)
    assert share_at(draws, cfg.sigma_max) < 0.005
    assert share_at(draws, cfg.sigma_min) < 0.005
    assert float((draws > cfg.sigma_max).float().mean()) == pytest.approx(0.0018, abs=0.001)  # the 0.18 %


def test_draws_replay_from_seed_and_step():
    cfg = CONFIGS["tiny"]
    first = noise_levels(BatchDraw(3, 7, 64, 0, 1, torch.device("cpu")), cfg)
    again = noise_levels(BatchDraw(3, 7, 64, 0, 1, torch.device("cpu")), cfg)
    other = noise_levels(BatchDraw(3, 8, 64, 0, 1, torch.device("cpu")), cfg)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sigma_uniform_weight", -0.1, "diffusion.sigma_uniform_weight: must lie in [0, 1]"),
    ("sigma_sampler_weight", 0.8, "diffusion.sigma_uniform_weight + diffusion.sigma_sampler_weight: must be <= 1"),
])
def test_mixture_weights_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("+", r"\+")):
        config_from_dict({"diffusion": {key: value}})
