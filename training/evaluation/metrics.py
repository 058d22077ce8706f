"""Evaluation metrics in physical space, PDEBench's definitions; pure functions of numpy or torch arrays.

Conventions: the last axis is space (X points of a periodic [0, length) grid). A rollout is [N, L, X]:
sample n, lead l = 1..L (lead index j holds the prediction j + 1 steps ahead of its initial frame).
Everything is computed in float64 numpy; torch tensors are detached and copied to the CPU first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# PDEBench's fRMSE bands over rfft wavenumbers k: low [0, 4), mid [4, 12), high [12, X/2].
FREQUENCY_BANDS: dict[str, tuple[int, int | None]] = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}
CORRELATION_THRESHOLDS = (0.8, 0.9, 0.95)
_TINY = 1e-30  # only guards 0/0 for all-zero fields


def as_numpy(array) -> np.ndarray:
    """float64 numpy view/copy of a numpy array or torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = as_numpy(pred), as_numpy(true)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    if pred.ndim < 1 or pred.shape[-1] < 2:
        raise ValueError(f"need at least 2 points on the last (space) axis, got shape {pred.shape}")
    return pred, true


def nrmse_per_sample(pred, true) -> np.ndarray:
    """||pred - true||_2 / ||true||_2 over space, for every leading index (e.g. [N, L])."""
    pred, true = _pair(pred, true)
    error = np.sqrt(np.sum((pred - true) ** 2, axis=-1))
    return error / np.maximum(np.sqrt(np.sum(true**2, axis=-1)), _TINY)


def nrmse(pred, true) -> float:
    """PDEBench's nRMSE: relative L2 error over space per sample (and frame), then the mean."""
    return float(np.mean(nrmse_per_sample(pred, true)))


def one_step_nrmse(pred_next, trajectories) -> float:
    """nRMSE of one-step predictions pred_next[:, t] ~ trajectories[:, t + 1] made from the true frame t.

    pred_next is [N, T-1, X] for trajectories [N, T, X].
    """
    true = as_numpy(trajectories)
    return nrmse(pred_next, true[:, 1:])


def rollout_nrmse(pred, true) -> np.ndarray:
    """nRMSE per lead time, averaged over samples: [N, L, X] -> [L]."""
    return nrmse_per_sample(pred, true).mean(axis=0)


def last_frame_nrmse(pred, true) -> float:
    """nRMSE of the final lead of a rollout [N, L, X]."""
    return float(rollout_nrmse(pred, true)[-1])


def pearson_per_sample(pred, true) -> np.ndarray:
    """Pearson correlation over space for every leading index ([N, L, X] -> [N, L])."""
    pred, true = _pair(pred, true)
    p = pred - pred.mean(axis=-1, keepdims=True)
    t = true - true.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(p**2, axis=-1) * np.sum(t**2, axis=-1))
    return np.sum(p * t, axis=-1) / np.maximum(denominator, _TINY)


@dataclass(frozen=True)
class CorrelationTime:
    """How long the sample-mean Pearson correlation stays above `threshold`.

    `frames` counts the leads before the first one below the threshold, so a prediction that is already
    decorrelated at lead 1 (persistence on a fast flow) scores 0, as in pdearena; `time` = frames * dt.
    If it never falls below within the rollout, `dropped` is False and frames/time are the horizon (a
    lower bound). `pdearena_correlation_steps` is pdearena's own count, which differs only where the
    curve comes back above the threshold.
    """

    threshold: float
    frames: int
    time: float
    dropped: bool


def correlation_frames(correlation_by_lead, threshold: float) -> np.ndarray:
    """Leads before the first one whose correlation is not above `threshold` (the horizon L if none is):
    [..., L] -> [...]; vectorised over leading axes (e.g. bootstrap resamples). On a curve that only
    falls this equals pdearena's count of leads above the threshold."""
    curve = as_numpy(correlation_by_lead)
    below = curve <= threshold
    return np.where(below.any(axis=-1), np.argmax(below, axis=-1), curve.shape[-1]).astype(np.float64)


def correlation_times(
    pred, true, dt: float, thresholds: Sequence[float] = CORRELATION_THRESHOLDS
) -> dict[float, CorrelationTime]:
    """Correlation time for each threshold from rollouts [N, L, X] with frame spacing dt."""
    mean_correlation = pearson_per_sample(pred, true).mean(axis=0)
    if mean_correlation.ndim != 1:
        raise ValueError(f"expected rollouts [N, L, X], got shape {as_numpy(pred).shape}")
    horizon = mean_correlation.shape[0]
    result = {}
    for threshold in thresholds:
        frames = int(correlation_frames(mean_correlation, threshold))
        result[threshold] = CorrelationTime(threshold, frames, frames * dt, bool(frames < horizon))
    return result


def pdearena_correlation_steps(correlation_by_lead, threshold: float) -> np.ndarray:
    """pdearena's `time_till_corr_lower_{threshold}`: the number of leads whose sample-mean correlation is
    strictly above the threshold, `(corr_timesteps > threshold).float().sum()` in
    pdearena/models/pderefiner.py (validation_epoch_end / test_epoch_end), with the correlation of
    pdearena/modules/loss.py `pearson_correlation` (population std over space, mean over the batch).
    Input [..., L] (any leading axes, e.g. bootstrap resamples), output [...] in steps."""
    return np.sum(as_numpy(correlation_by_lead) > threshold, axis=-1).astype(np.float64)


def frmse_bands(pred, true, length: float = 1.0) -> dict[str, float]:
    """PDEBench's fRMSE: RMS over samples of |FFT(pred - true)_k| / X * length, averaged over the
    wavenumbers k of each band (low/mid/high) and over any remaining leading axes (e.g. lead time)."""
    pred, true = _pair(pred, true)
    n_points = pred.shape[-1]
    spectrum = np.abs(np.fft.rfft(pred - true, axis=-1)) ** 2  # [N, ..., K]
    per_mode = np.sqrt(spectrum.mean(axis=0)) / n_points * length  # RMS over samples: [..., K]
    result = {}
    for name, (low, high) in FREQUENCY_BANDS.items():
        band = per_mode[..., low:high]
        result[name] = float(band.mean()) if band.shape[-1] else float("nan")
    return result


def persistence(trajectories, start: int = 0) -> np.ndarray:
    """Persistence baseline: frame `start` repeated for every later lead, [N, T, X] -> [N, T-start-1, X]."""
    true = as_numpy(trajectories)
    if not 0 <= start < true.shape[1] - 1:
        raise ValueError(f"start must leave at least one lead in {true.shape[1]} frames, got {start}")
    leads = true.shape[1] - start - 1
    return np.repeat(true[:, start : start + 1], leads, axis=1)


@dataclass(frozen=True)
class RolloutMetrics:
    """Scalar summary of rollouts against truth, ready for a metrics logger."""

    nrmse: float
    last_frame_nrmse: float
    nrmse_by_lead: np.ndarray
    correlation: dict[float, CorrelationTime]
    frmse: dict[str, float]

    def scalars(self, prefix: str = "") -> dict[str, float]:
        values = {"nrmse": self.nrmse, "nrmse_last": self.last_frame_nrmse}
        for threshold, corr in self.correlation.items():
            values[f"corr_time_{threshold:g}"] = corr.time
            values[f"corr_frames_{threshold:g}"] = float(corr.frames)
        values.update({f"frmse_{band}": value for band, value in self.frmse.items()})
        return {f"{prefix}{name}": value for name, value in values.items()}


def rollout_metrics(pred, true, dt: float, length: float = 1.0) -> RolloutMetrics:
    """All rollout metrics for predictions pred [N, L, X] of true [N, L, X] (leads 1..L, spacing dt)."""
    by_lead = rollout_nrmse(pred, true)
    return RolloutMetrics(
        nrmse=float(by_lead.mean()), last_frame_nrmse=float(by_lead[-1]), nrmse_by_lead=by_lead,
        correlation=correlation_times(pred, true, dt), frmse=frmse_bands(pred, true, length),
    )
