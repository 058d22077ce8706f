"""PDEBench's evaluation protocol for 1D fields, reproduced exactly so our numbers sit beside its tables.

Source: pdebench/PDEBench, `pdebench/models/metrics.py` (`metric_func` and `metrics`, main branch after
commit 268ba5e "fix metrics addressing #41", Oct 2024) and `pdebench/models/config/args/config_Bgs.yaml`
(1D Burgers: `reduced_resolution_t: 5` -> 41 frames, `initial_step: 10`). Its protocol:

- A test trajectory of T frames; the first `initial_step` frames are the given context, the model predicts
  frames initial_step .. T-1 autoregressively (`for t in range(initial_step, yy.shape[-2])`), and
  `metric_func(pred, yy, initial_step=...)` slices the context off (`pred[..., initial_step:, :]`).
- Per sample b and frame t, over space: RMSE = sqrt(mean_x err^2); nRMSE = RMSE / sqrt(mean_x u^2);
  bRMSE (1D) = sqrt((err[x_0]^2 + err[x_-1]^2) / 2). These are averaged over samples, then over frames.
- cRMSE ("conserved variables", err_CSV) = sqrt(mean_b (sum_x err)^2) / X per frame; fRMSE per rfft
  wavenumber k = sqrt(mean_b |rfft(err)_k|^2) / X * Lx, averaged over k in [0, 4), [4, 12), [12, X/2]
  (iLow=4, iHigh=12); max error = max over samples and space per frame. Each is then averaged over frames.

Differences, on purpose: we score the whole test split as one batch (PDEBench averages per-batch values
over batches, the same for the sample means above and, for cRMSE/fRMSE/max, the same as PDEBench with a
batch holding the whole split; its main branch also divides that sum by the last batch index instead of
the batch count). Before 268ba5e the context frames (zero error) stayed in the time average, which is
how PDEBench's published tables were made: `pdebench_nRMSE_with_context` reports that variant.

A Markov (one-frame) surrogate given the context starts from its last frame, initial_step - 1.
Functions take numpy arrays or torch tensors [N, T, X] of whole trajectories (context included).
"""

from __future__ import annotations

import numpy as np

from training.evaluation.metrics import FREQUENCY_BANDS, as_numpy

DEFAULT_INITIAL_STEP = 10  # PDEBench's 1D configs (config_Bgs.yaml, config_Adv.yaml, ...)
_TINY = 1e-30


def predicted_frames(frames: int, initial_step: int) -> int:
    """How many frames PDEBench scores in a trajectory of `frames` frames; errors say what to change."""
    if initial_step < 1:
        raise ValueError(f"initial_step must be >= 1 (PDEBench needs at least one context frame), got {initial_step}")
    if frames <= initial_step:
        raise ValueError(f"PDEBench protocol: {frames} frames leave nothing to predict after {initial_step} "
                         "context frames; lower evaluate.pdebench_initial_step or load more frames")
    return frames - initial_step


def pdebench_components(pred, true, initial_step: int = DEFAULT_INITIAL_STEP) -> dict[str, np.ndarray]:
    """Per-trajectory pieces of PDEBench's metrics (first axis: trajectory), from which every metric is a
    function of their means over trajectories; that is what lets a bootstrap resample trajectories."""
    pred, true = as_numpy(pred), as_numpy(true)
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"expected prediction and truth [N, T, X] of one shape, got {pred.shape} and {true.shape}")
    predicted_frames(true.shape[1], initial_step)
    err = pred[:, initial_step:] - true[:, initial_step:]  # [N, T', X]
    target = true[:, initial_step:]
    n_points = err.shape[-1]
    rmse = np.sqrt(np.mean(err**2, axis=-1))  # [N, T']
    norm = np.sqrt(np.mean(target**2, axis=-1))
    return {
        "pdebench_rmse": rmse.mean(axis=-1),
        "pdebench_nrmse": (rmse / np.maximum(norm, _TINY)).mean(axis=-1),
        "pdebench_brmse": np.sqrt((err[..., 0] ** 2 + err[..., -1] ** 2) / 2).mean(axis=-1),
        "pdebench_csv_sq": (err.sum(axis=-1) / n_points) ** 2,  # [N, T']
        "pdebench_power": np.abs(np.fft.rfft(err, axis=-1)) ** 2,  # [N, T', K]
    }


# metric name -> the components it is computed from
PDEBENCH_INPUTS: dict[str, str] = {
    "pdebench_RMSE": "pdebench_rmse", "pdebench_nRMSE": "pdebench_nrmse", "pdebench_bRMSE": "pdebench_brmse",
    "pdebench_cRMSE": "pdebench_csv_sq", **{f"pdebench_fRMSE_{band}": "pdebench_power" for band in FREQUENCY_BANDS},
}


def pdebench_from_means(means: dict[str, np.ndarray], n_points: int, length: float) -> dict[str, np.ndarray]:
    """PDEBench's metrics from the trajectory means of `pdebench_components` (leading axes kept); only
    those whose component is in `means` (see PDEBENCH_INPUTS)."""
    out = {}
    for name in ("pdebench_RMSE", "pdebench_nRMSE", "pdebench_bRMSE"):
        if PDEBENCH_INPUTS[name] in means:
            out[name] = means[PDEBENCH_INPUTS[name]]
    if "pdebench_csv_sq" in means:
        out["pdebench_cRMSE"] = np.sqrt(means["pdebench_csv_sq"]).mean(axis=-1)
    if "pdebench_power" in means:
        per_mode = np.sqrt(means["pdebench_power"]) / n_points * length  # [..., T', K]
        for band, (low, high) in FREQUENCY_BANDS.items():
            out[f"pdebench_fRMSE_{band}"] = per_mode[..., low:high].mean(axis=(-2, -1))
    return out


def pdebench_metrics(pred, true, initial_step: int = DEFAULT_INITIAL_STEP, length: float = 1.0) -> dict[str, float]:
    """PDEBench's `metric_func(..., if_mean=True)` for one channel in 1D, named `pdebench_*`; `length` is Lx."""
    pred, true = as_numpy(pred), as_numpy(true)
    parts = pdebench_components(pred, true, initial_step)
    metrics = pdebench_from_means({k: v.mean(axis=0) for k, v in parts.items()}, true.shape[-1], length)
    out = {name: float(value) for name, value in metrics.items()}
    out["pdebench_maxError"] = float(np.abs(pred[:, initial_step:] - true[:, initial_step:]).max(axis=(0, 2)).mean())
    out["pdebench_nRMSE_with_context"] = out["pdebench_nRMSE"] * (true.shape[1] - initial_step) / true.shape[1]
    return out


def with_context(trajectories, rollout, initial_step: int) -> np.ndarray:
    """Whole trajectories in PDEBench's layout: the true context frames 0..initial_step-1, then a rollout
    [N, T - initial_step + 1, X] started from frame initial_step - 1 (its frame 0 is that true frame)."""
    true, rolled = as_numpy(trajectories), as_numpy(rollout)
    if rolled.shape[1] != true.shape[1] - initial_step + 1:
        raise ValueError(f"rollout of {rolled.shape[1]} frames does not cover frames {initial_step - 1}.."
                         f"{true.shape[1] - 1}")
    return np.concatenate([true[:, : initial_step - 1], rolled], axis=1)
