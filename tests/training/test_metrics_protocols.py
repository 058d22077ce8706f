"""PDEBench's protocol, pdearena's correlation time and the ensemble scores on cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluation.ensemble import (
    crps_per_trajectory,
    ensemble_mean_nrmse_per_trajectory,
    spread_skill_components,
    spread_skill_ratio,
)
from training.evaluation.metrics import (
    correlation_frames,
    correlation_times,
    pdearena_correlation_steps,
    persistence,
)
from training.evaluation.pdebench import pdebench_metrics, predicted_frames, with_context

X = np.arange(32) / 32


def _pdebench_case():
    """Truth constant in space (c per sample and frame); the error in predicted frames is an offset d plus
    a k = 13 cosine of amplitude a; context frames 0..1 of the prediction are garbage (PDEBench drops them)."""
    c = np.array([[2.0, 2.0, 2.0, 4.0, 1.0], [1.0, 3.0, 2.0, 2.0, 5.0]])  # [N=2, T=5]
    d = np.array([[0.1, -0.2, 0.3], [0.2, 0.1, -0.1]])  # frames 2, 3, 4
    a = np.array([[0.4, 0.2, 0.6], [0.2, 0.8, 0.4]])
    true = np.repeat(c[..., None], 32, axis=-1)
    pred = true.copy()
    pred[:, :2] += 7.0
    wave = np.cos(2 * np.pi * 13 * X)
    pred[:, 2:] += d[..., None] + a[..., None] * wave
    return pred, true, c[:, 2:], d, a, wave


def test_pdebench_metrics_match_a_hand_computed_case():
    pred, true, c, d, a, wave = _pdebench_case()
    got = pdebench_metrics(pred, true, initial_step=2, length=2.0)
    rmse = np.sqrt(d**2 + a**2 / 2)  # mean_x (d + a cos)^2 = d^2 + a^2 / 2
    assert got["pdebench_RMSE"] == pytest.approx(rmse.mean())
    assert got["pdebench_nRMSE"] == pytest.approx((rmse / np.abs(c)).mean())
    assert got["pdebench_nRMSE_with_context"] == pytest.approx((rmse / np.abs(c)).mean() * 3 / 5)
    # sum_x err / X = d: RMS over samples per frame, then the mean over frames
    assert got["pdebench_cRMSE"] == pytest.approx(np.sqrt((d**2).mean(axis=0)).mean())
    edge = np.sqrt(((d + a * wave[0]) ** 2 + (d + a * wave[-1]) ** 2) / 2)
    assert got["pdebench_bRMSE"] == pytest.approx(edge.mean())
    # |rfft|/X * Lx: k = 0 carries d * Lx, k = 13 carries a / 2 * Lx; bands [0, 4) and [12, 16] (5 modes)
    assert got["pdebench_fRMSE_low"] == pytest.approx((2.0 * np.sqrt((d**2).mean(axis=0)) / 4).mean())
    assert got["pdebench_fRMSE_mid"] == pytest.approx(0.0, abs=1e-12)
    assert got["pdebench_fRMSE_high"] == pytest.approx((2.0 * np.sqrt((a**2).mean(axis=0)) / 2 / 5).mean())
    worst = np.abs(d[..., None] + a[..., None] * wave).max(axis=(0, 2))  # max over samples and space per frame
    assert got["pdebench_maxError"] == pytest.approx(worst.mean())
    # torch in, the same numbers out
    assert pdebench_metrics(torch.tensor(pred), torch.tensor(true), 2, 2.0)["pdebench_nRMSE"] == pytest.approx(
        got["pdebench_nRMSE"])


def test_pdebench_protocol_starts_from_its_context_and_refuses_too_short_trajectories():
    pred, true, *_ = _pdebench_case()
    rollout = pred[:, 1:]  # frames 1..4: a Markov model started from the last context frame (initial_step - 1)
    rollout[:, 0] = true[:, 1]
    whole = with_context(true, rollout, initial_step=2)
    assert whole.shape == true.shape and np.array_equal(whole[:, :2], true[:, :2])
    assert pdebench_metrics(whole, true, 2)["pdebench_nRMSE"] == pytest.approx(pdebench_metrics(pred, true, 2)[
        "pdebench_nRMSE"])
    assert predicted_frames(41, 10) == 31
    with pytest.raises(ValueError, match="pdebench_initial_step"):
        predicted_frames(10, 10)
    with pytest.raises(ValueError, match="does not cover"):
        with_context(true, rollout[:, 1:], initial_step=2)


def test_persistence_of_a_fast_wave_has_correlation_time_zero_like_pdearena():
    shift, leads = 1.0, 6  # corr(lead 1) = cos(1) = 0.54: decorrelated at the first step
    trajectories = np.stack([np.sin(2 * np.pi * X - lead * shift) for lead in range(leads + 1)])[None]
    pred, true = persistence(trajectories), trajectories[:, 1:]
    for threshold, corr in correlation_times(pred, true, dt=0.05).items():
        assert corr.frames == 0 and corr.time == 0.0 and corr.dropped, threshold


def test_correlation_time_is_pdearenas_count_on_a_falling_curve_and_first_drop_otherwise():
    falling = np.array([0.99, 0.95, 0.91, 0.85, 0.5])
    assert correlation_frames(falling, 0.9) == 3 == pdearena_correlation_steps(falling, 0.9)
    assert correlation_frames(falling, 0.999) == 0 == pdearena_correlation_steps(falling, 0.999)
    assert correlation_frames(falling, 0.1) == 5 == pdearena_correlation_steps(falling, 0.1)  # never drops
    recovering = np.array([0.95, 0.7, 0.92])  # pdearena counts every lead above; we stop at the first drop
    assert correlation_frames(recovering, 0.9) == 1 and pdearena_correlation_steps(recovering, 0.9) == 2
    batch = np.stack([falling, falling[::-1]])  # vectorised over leading axes (bootstrap resamples)
    np.testing.assert_array_equal(correlation_frames(batch, 0.9), [3, 0])


def test_crps_of_a_degenerate_ensemble_is_the_mae():
    rng = np.random.default_rng(3)
    true, pred = rng.normal(size=(5, 4, 32)), rng.normal(size=(5, 4, 32))
    mae = np.abs(pred - true).mean(axis=(1, 2))
    np.testing.assert_allclose(crps_per_trajectory(np.repeat(pred[None], 6, axis=0), true), mae, rtol=1e-12)
    np.testing.assert_allclose(crps_per_trajectory(pred[None], true), mae, rtol=1e-12)


def test_crps_hand_case():
    members = np.array([0.0, 1.0, 2.0]).reshape(3, 1, 1, 1)
    # mean |x - 3| = 2; sum over ordered pairs |x - x'| = 8, / (2 M (M - 1)) = 2/3
    assert crps_per_trajectory(members, np.full((1, 1, 1), 3.0))[0] == pytest.approx(4 / 3)


def test_spread_skill_of_a_calibrated_ensemble_is_near_one():
    rng = np.random.default_rng(7)
    centre = rng.normal(size=(200, 8, 64)) * 3  # the predictable part, per point
    truth = centre + rng.normal(size=centre.shape)  # truth and members: draws from one distribution
    for members in (2, 4, 16):
        ensemble = centre[None] + rng.normal(size=(members, *centre.shape))
        parts = spread_skill_components(ensemble, truth)
        ratio = spread_skill_ratio(parts["ens_var"].mean(), parts["ens_sqerr"].mean(), members)
        assert ratio == pytest.approx(1.0, abs=0.04), members
    wide = centre[None] + 2 * rng.normal(size=(4, *centre.shape))  # under-confident: twice the spread
    parts = spread_skill_components(wide, truth)
    assert spread_skill_ratio(parts["ens_var"].mean(), parts["ens_sqerr"].mean(), 4) > 1.5


def test_ensemble_mean_nrmse_and_a_single_member():
    rng = np.random.default_rng(1)
    true, noise = rng.normal(size=(3, 5, 32)), rng.normal(size=(3, 5, 32))
    ensemble = np.stack([true + noise, true - noise])  # the mean is exact
    np.testing.assert_allclose(ensemble_mean_nrmse_per_trajectory(ensemble, true), 0, atol=1e-12)
    assert spread_skill_components(true[None] + noise, true)["ens_var"].max() == 0.0
    with pytest.raises(ValueError, match="ensemble"):
        crps_per_trajectory(true, true)
