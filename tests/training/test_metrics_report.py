"""The evaluation report and the bench's verdicts on synthetic forecasts with known quality.

Forecasts are truth plus noise of a chosen size (the operator better than the FNO, a calibrated
stochastic refiner), scored and written exactly as the evaluate stage does, read back as the bench does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.bench.judge import MET, MISSED, UNDECIDED, Aim, SeedRun, default_aims, judge, verdict
from training.evaluation.bootstrap import Interval
from training.evaluation.report import comparison_plan, comparisons, method_metrics, write_reports
from training.evaluation.scoring import Scorer, ScoringSpec, score_components, statistics

N, T, X, STEPS, CONTEXT = 24, 12, 32, 10, 4
NOISE = {"persistence": None, "fno": 0.30, "operator": 0.20, "operator+diffusion": 0.20}


def _forecast(rng, truth, start, noise, members):
    """Members [M, N, frames, X] from frame `start`: truth + noise growing with lead (frame 0 exact)."""
    part = truth[:, start:]
    if noise is None:  # persistence
        return np.repeat(part[:, :1], part.shape[1], axis=1)[None]
    lead = np.arange(part.shape[1])[None, None, :, None] / part.shape[1]
    common = noise * lead * rng.normal(size=(1, *part.shape))  # shared by all members: the model's bias
    spread = noise * lead * rng.normal(size=(members, *part.shape)) if members > 1 else 0.0
    return part[None] + common + spread


def write_seed(folder: Path, seed: int, trajectories: np.ndarray) -> dict:
    rng = np.random.default_rng(100 + seed)
    spec = ScoringSpec(dt=0.05, length=1.0, n_points=X, thresholds=(0.8, 0.9, 0.95), initial_step=CONTEXT, frames=T)
    scorer = Scorer(N, 300, 0.95, seed=0)
    u = trajectories[:, : STEPS + 1]
    results, scored, parts_by_method, rollouts = {}, {}, {}, {}
    for name, noise in NOISE.items():
        members = 4 if name == "operator+diffusion" else 1
        ours = _forecast(rng, u, 0, noise, members)
        pdebench = _forecast(rng, trajectories, CONTEXT - 1, noise, members)
        one_step = u[:, 1:] if noise is None else u[:, 1:] + 0.01 * rng.normal(size=u[:, 1:].shape)
        parts = score_components(ours, u, one_step if noise else u[:, :-1], trajectories, pdebench, CONTEXT)
        scored[name] = scorer.score(parts, statistics(spec, members))
        results[name] = method_metrics(name, scored[name], scorer, spec,
                                       nrmse_vs_lead=list(parts["nrmse_lead"].mean(axis=0)),
                                       evaluations_per_step=1 + 5 * (members > 1), members=members,
                                       stochastic=members > 1, max_error=0.0, wall_s=0.0)
        parts_by_method[name], rollouts[name] = parts, torch.tensor(ours[0])
    plan = comparison_plan(list(NOISE), {}, spec.thresholds, {n: r.stochastic for n, r in results.items()})
    ratios = comparisons(plan, scored, scorer)
    extra = {"scoring": spec.as_dict(), "autoencoder_recon_nrmse_test": 1e-3, "bootstrap_resamples": 300,
             "test_trajectories": N, "rollout_steps": STEPS, "dt": 0.05}
    write_reports(folder, results, ratios, rollouts, torch.tensor(u), torch.arange(X) / X, 0.05, extra,
                  components=parts_by_method, plots_enabled=False)
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def seed_dirs(tmp_path_factory):
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 2 * np.pi, size=(N, 1, 1))
    t = np.arange(T)[None, :, None] * 0.05
    x = (np.arange(X) / X)[None, None, :]
    trajectories = np.sin(2 * np.pi * x - 3.0 * t + phases) * np.exp(-0.5 * t) + 0.5 * np.cos(4 * np.pi * x + phases)
    root = tmp_path_factory.mktemp("bench")
    for seed in range(3):
        write_seed(root / f"seed{seed}", seed, trajectories)
    return root


def test_metrics_json_has_pdebench_metrics_ratios_and_intervals(seed_dirs):
    metrics = json.loads((seed_dirs / "seed0" / "metrics.json").read_text())
    persistence, refiner = metrics["methods"]["persistence"], metrics["methods"]["operator+diffusion"]
    assert {"pdebench_nRMSE", "pdebench_fRMSE_high", "pdebench_cRMSE", "pdebench_bRMSE",
            "pdebench_maxError"} <= set(persistence["pdebench"])
    for name, (low, high) in refiner["intervals"].items():
        value = refiner["ensemble"].get(name, refiner["pdebench"].get(name))
        if value is not None:
            assert low <= value <= high, name
    assert refiner["ensemble"]["members"] == 4 and 0.5 < refiner["ensemble"]["spread_skill"] < 2
    assert refiner["ensemble"]["ensemble_rollout_nrmse"] < refiner["rollout_nrmse"]  # the mean beats a sample
    ratios = {(c["method"], c["baseline"], c["metric"]): c for c in metrics["comparisons"]}
    better = ratios[("operator", "fno", "pdebench_nRMSE")]
    assert better["low"] <= better["ratio"] <= better["high"] < 1  # 0.2 vs 0.3 noise: resolved
    assert ("operator+diffusion", "operator", "crps") in ratios
    table = (seed_dirs / "seed0" / "metrics.md").read_text()
    assert "## PDEBench protocol: 4 context frames, frames 4..11 predicted" in table
    assert "| operator | fno | pdebench_nRMSE |" in table and " [" in table
    assert "spread/skill" in table


def test_bench_marks_an_aim_met_only_when_its_pooled_interval_is(seed_dirs):
    runs = [SeedRun.load(seed, seed_dirs / f"seed{seed}") for seed in range(3)]
    rows = {row["aim"]: row for row in judge(runs, default_aims(runs[0].metrics["methods"]), resamples=300)}
    operator = rows["operator pdebench_nRMSE / FNO"]
    assert operator["verdict"] == MET and operator["high"] <= 1.0 and operator["seeds"] == [0, 1, 2]
    assert rows["operator one-step nRMSE / persistence"]["verdict"] == MISSED  # persistence is exact one step
    assert "operator+diffusion spread/skill" in rows
    tight = judge(runs, [Aim("operator / FNO at 0.667", "operator", "pdebench_nRMSE", "fno", "<=",
                             rows["operator pdebench_nRMSE / FNO"]["measured"])], resamples=300)
    assert tight[0]["verdict"] == UNDECIDED  # a target at the point estimate is inside the interval


def test_verdict_rules():
    inside = Interval(1.0, 0.9, 1.1)
    assert verdict(inside, "<=", 1.2) == MET and verdict(inside, "<=", 0.8) == MISSED
    assert verdict(inside, "<=", 1.0) == UNDECIDED and verdict(inside, ">=", 0.85) == MET
    assert verdict(inside, "within", (0.7, 1.3)) == MET and verdict(inside, "within", (1.2, 1.3)) == MISSED
    assert verdict(Interval(1.0, float("nan"), float("nan")), "<=", 2.0) == UNDECIDED
    unbounded = Interval(float("inf"), 2.0, float("inf"))  # a ratio over a baseline that scores 0
    assert verdict(unbounded, ">=", 1.1) == MET and verdict(unbounded, "<=", 1.0) == MISSED
    with pytest.raises(ValueError, match="direction"):
        verdict(inside, "<", 1.0)
