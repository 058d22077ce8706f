"""Scores for stochastic forecasts: an ensemble [M, N, ..., X] of M samples against the truth [N, ..., X].

A single sample of a sampler is charged for its sample variance; these score the sampler as the
distribution it is:
- ensemble-mean nRMSE (the deterministic forecast the ensemble implies);
- CRPS, the "fair" ensemble estimator (Ferro 2014; Zamo & Naveau 2018):
  mean_m |x_m - y| - sum_{m,m'} |x_m - x_m'| / (2 M (M - 1)), per point; for M = 1 (or M equal
  members) it is the absolute error, so a deterministic method's CRPS is its MAE;
- spread/skill = sqrt((M + 1) / M * mean s^2) / sqrt(mean (x̄ - y)^2), with s^2 the unbiased member
  variance; the (M + 1) / M factor (Fortin et al. 2014) makes it 1 in expectation for a calibrated
  ensemble of any size: < 1 over-confident, > 1 under-confident.

Every function returns per-trajectory values (first axis N) that are means over the remaining axes,
so the ratios above are functions of trajectory means (bootstrappable in `training.evaluation.bootstrap`).
"""

from __future__ import annotations

import numpy as np

from training.evaluation.metrics import as_numpy, nrmse_per_sample


def _members(ensemble, true) -> tuple[np.ndarray, np.ndarray]:
    ensemble, true = as_numpy(ensemble), as_numpy(true)
    if ensemble.ndim < 3 or ensemble.shape[1:] != true.shape:
        raise ValueError(f"expected an ensemble [M, *truth shape] with truth [N, ..., X], got {ensemble.shape} "
                         f"and {true.shape}")
    return ensemble, true


def _per_trajectory(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).mean(axis=1)


def crps_per_trajectory(ensemble, true) -> np.ndarray:
    """Fair ensemble CRPS per point, averaged over everything but the trajectory axis: [N]."""
    ensemble, true = _members(ensemble, true)
    members = ensemble.shape[0]
    skill = np.abs(ensemble - true[None]).mean(axis=0)
    if members == 1:
        return _per_trajectory(skill)
    # sum_{m<m'} |x_m - x_m'| from the sorted members: sum_i (2i - M + 1) x_(i), O(M log M)
    ordered = np.sort(ensemble, axis=0)
    weights = (2 * np.arange(members) - members + 1).reshape(-1, *([1] * true.ndim))
    pair_sum = (weights * ordered).sum(axis=0)  # over unordered pairs
    return _per_trajectory(skill - pair_sum / (members * (members - 1)))


def ensemble_mean_nrmse_per_trajectory(ensemble, true) -> np.ndarray:
    """nRMSE of the ensemble mean per frame, averaged over frames: [N]."""
    ensemble, true = _members(ensemble, true)
    return _per_trajectory(nrmse_per_sample(ensemble.mean(axis=0), true))


def spread_skill_components(ensemble, true) -> dict[str, np.ndarray]:
    """Per-trajectory mean unbiased member variance and mean squared error of the ensemble mean, [N] each
    (variance 0 for a single member)."""
    ensemble, true = _members(ensemble, true)
    variance = ensemble.var(axis=0, ddof=1) if ensemble.shape[0] > 1 else np.zeros_like(true)
    return {"ens_var": _per_trajectory(variance), "ens_sqerr": _per_trajectory((ensemble.mean(axis=0) - true) ** 2)}


def spread_skill_ratio(variance_mean, sqerr_mean, members: int) -> np.ndarray:
    """sqrt((M + 1) / M * mean variance) / RMSE of the ensemble mean; any leading axes are kept."""
    variance_mean, sqerr_mean = as_numpy(variance_mean), as_numpy(sqerr_mean)
    return np.sqrt((members + 1) / members * variance_mean) / np.sqrt(np.maximum(sqerr_mean, 1e-300))
