"""Metrics on analytic cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluation.metrics import (
    correlation_times,
    frmse_bands,
    last_frame_nrmse,
    nrmse,
    nrmse_per_sample,
    one_step_nrmse,
    pearson_per_sample,
    persistence,
    rollout_metrics,
    rollout_nrmse,
)

X = np.arange(64) / 64


def _wave(k: int = 1, shift: float = 0.0) -> np.ndarray:
    return np.sin(2 * np.pi * k * X + shift)


def test_nrmse_identical_scaled_and_zero_predictions():
    true = np.stack([_wave(1), 3 * _wave(2)])
    assert nrmse(true, true) == 0.0
    assert nrmse(1.1 * true, true) == pytest.approx(0.1, rel=1e-12)
    assert nrmse(np.zeros_like(true), true) == pytest.approx(1.0)
    # per sample over space first, then the mean: a 10% and a 30% error average to 20%
    pred = true * np.array([[1.1], [0.7]])
    np.testing.assert_allclose(nrmse_per_sample(pred, true), [0.1, 0.3])
    assert nrmse(pred, true) == pytest.approx(0.2)


def test_accepts_torch_tensors_and_rejects_shape_mismatch():
    true = torch.tensor(np.stack([_wave(1), _wave(3)]), dtype=torch.float32)
    assert nrmse(true * 1.5, true) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="differs"):
        nrmse(true[:, :10], true)


def test_one_step_rollout_and_last_frame_on_a_decaying_wave():
    decay = 0.9 ** np.arange(6)
    trajectories = decay[None, :, None] * _wave(1)[None, None, :]  # [1, 6, 64]
    assert one_step_nrmse(trajectories[:, 1:], trajectories) == 0.0
    # persistence: the initial frame for every lead l -> |1 - 0.9^l| / 0.9^l
    pred = persistence(trajectories)
    expected = np.abs(1 - decay[1:]) / decay[1:]
    np.testing.assert_allclose(rollout_nrmse(pred, trajectories[:, 1:]), expected, rtol=1e-12)
    assert last_frame_nrmse(pred, trajectories[:, 1:]) == pytest.approx(expected[-1])
    np.testing.assert_array_equal(persistence(trajectories, start=4), trajectories[:, 4:5])
    with pytest.raises(ValueError, match="start"):
        persistence(trajectories, start=5)


def test_correlation_time_of_a_drifting_wave():
    delta, dt, leads = 0.05, 0.01, 40
    true = np.stack([_wave(1, shift=-lead * delta) for lead in range(1, leads + 1)])[None]
    pred = np.repeat(_wave(1)[None, None], leads, axis=1)
    np.testing.assert_allclose(pearson_per_sample(pred, true)[0], np.cos(delta * np.arange(1, leads + 1)), atol=1e-12)
    times = correlation_times(pred, true, dt)
    for threshold in (0.8, 0.9, 0.95):
        above = int(np.floor(np.arccos(threshold) / delta))  # leads l with cos(l delta) > threshold
        assert times[threshold].frames == above and times[threshold].dropped
        assert times[threshold].time == pytest.approx(above * dt)
    assert times[0.8].frames > times[0.9].frames > times[0.95].frames
    never = correlation_times(true, true, dt, thresholds=(0.99,))[0.99]
    assert not never.dropped and never.frames == leads and never.time == pytest.approx(leads * dt)


def test_frmse_puts_a_single_mode_error_in_its_band():
    amplitude = 0.4
    true = np.zeros((3, 64))
    low = frmse_bands(true + amplitude * _wave(2), true)
    # |rfft| of A sin(2 pi k x) on X points is A X / 2 at k; / X -> A / 2, averaged over the 4 low modes
    assert low["low"] == pytest.approx(amplitude / 2 / 4) and low["mid"] < 1e-15 and low["high"] < 1e-15
    high = frmse_bands(true + amplitude * _wave(20), true)
    assert high["high"] == pytest.approx(amplitude / 2 / 21)  # modes 12..32 of a 64-point grid
    assert high["low"] == pytest.approx(0, abs=1e-15)
    mid = frmse_bands(true + amplitude * _wave(5), true, length=2.0)
    assert mid["mid"] == pytest.approx(2.0 * amplitude / 2 / 8)


def test_rollout_metrics_summary_scalars():
    true = np.stack([_wave(1, shift=-0.1 * lead) for lead in range(1, 11)])[None].repeat(2, axis=0)
    pred = persistence(np.concatenate([_wave(1)[None, None].repeat(2, axis=0), true], axis=1))
    summary = rollout_metrics(pred, true, dt=0.5)
    scalars = summary.scalars("rollout/")
    assert scalars["rollout/nrmse_last"] == pytest.approx(last_frame_nrmse(pred, true))
    # cos(0.1 l) > 0.95 for l = 1, 2, 3: three leads, 1.5 time units
    assert scalars["rollout/corr_frames_0.95"] == 3.0 and scalars["rollout/corr_time_0.95"] == 1.5
    assert {"rollout/frmse_low", "rollout/frmse_mid", "rollout/frmse_high"} <= set(scalars)
    assert summary.nrmse_by_lead.shape == (10,)
