"""Stage 6: decoded, physical-space metrics on the held-out test split, against honest baselines.

Methods: persistence, an FNO (neuraloperator) trained here on the same data and step budget as the
operator, the operator alone, operator + diffusion refinement (Heun), operator + distilled student
(1 and 2 steps), and PDE-Refiner with its MSE baseline when enabled. Each is scored twice: our protocol
(from frame 0, `rollout_steps` leads) and PDEBench's (`pdebench_initial_step` context frames, the rest of
the trajectory predicted); stochastic methods also as an ensemble of `ensemble_size` samples. Every
number carries a paired bootstrap interval over test trajectories. Writes metrics/metrics.json,
metrics/metrics.md, metrics/per_trajectory.npz and PNG plots, and logs them to W&B.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.config import EvaluateConfig
from training.evaluation.pdebench import pdebench_metrics, predicted_frames, with_context
from training.evaluation.report import (
    Comparison,
    MethodMetrics,
    comparison_plan,
    comparisons,
    method_metrics,
    write_reports,
)
from training.evaluation.scoring import Scored, Scorer, ScoringSpec, score_components, statistics
from training.evaluation.surrogates import (
    LatentSurrogate,
    Persistence,
    PhysicalStepper,
    Surrogate,
    heun_refiner,
)
from training.models.consistency import student_refiner
from training.models.diffusion import refine_evaluations
from training.models.fno import FNOStepper
from training.optim.loop import TrainSpec, train
from training.optim.pushforward import pushforward_loss
from training.optim.schedule import BatchDraw
from training.run.context import StageContext, StageResult
from training.stages import pderefiner
from training.stages.autoencoder import reconstruction_nrmse
from training.stages.registry import FNO
from training.stages.upstream import load_autoencoder, load_diffusion, load_operator, load_student
from training.store.datafiles import load_split

STAGE = "evaluate"
DECLARED_BASELINES = {"pderefiner": "pderefiner-mse"}  # PDE-Refiner against its same-backbone MSE network


def train_fno(ctx: StageContext, train_u: torch.Tensor) -> tuple[FNOStepper, dict]:
    """The baseline, with the operator's recipe: one-step + pushforward loss, same steps and batch."""
    cfg, device = ctx.cfg, ctx.runtime.device
    u = train_u.to(device)
    model = FNOStepper(cfg.fno).to(device)
    model.set_stats(float(u.mean()), float(u.std()))
    samples, frames = u.shape[:2]
    unroll = cfg.fno.unroll_steps
    starts = frames - unroll

    def loss_fn(net: torch.nn.Module, draw: BatchDraw) -> torch.Tensor:
        flat = draw.randint(samples * starts).to(device)
        n, t = flat // starts, flat % starts
        x = u[n, t]
        return pushforward_loss(net, x, u[n, t + 1], u[n, t + unroll], unroll, scale=model.u_std)

    outcome = train(ctx, TrainSpec(stage=STAGE, kind=FNO.name, loop=cfg.fno, model=model, loss_fn=loss_fn,
                                   folder=FNO.stage, name=FNO.name, seed_salt=6,
                                   # cuFFT has no bf16 transforms: the spectral layers stay in fp32
                                   autocast=False))
    model.eval()
    return model, {"steps": outcome.steps, "wall_s": outcome.wall_s, "samples_per_s": outcome.samples_per_s,
                   "final_loss": outcome.final_loss}


def build_methods(ctx: StageContext, fno: FNOStepper) -> tuple[list[Surrogate], dict[str, str]]:
    cfg = ctx.cfg
    autoencoder, operator = load_autoencoder(ctx), load_operator(ctx)
    upstream = {"autoencoder": autoencoder.uid, "operator": operator.uid}
    methods: list[Surrogate] = [Persistence(), PhysicalStepper(fno),
                                LatentSurrogate("operator", autoencoder.model, operator.model)]
    if "diffusion" in cfg.stages:
        diffusion = load_diffusion(ctx)
        upstream["diffusion"] = diffusion.uid
        refine = heun_refiner(diffusion.model, cfg.diffusion)
        methods.append(LatentSurrogate("operator+diffusion", autoencoder.model, operator.model, refiner=refine,
                                       refiner_evaluations=refine_evaluations(cfg.diffusion),
                                       seed=cfg.evaluate.seed))
        if "distill" in cfg.stages:
            student = load_student(ctx)
            upstream["distill"] = student.uid
            for steps in cfg.distill.student_steps:
                refine = student_refiner(student.model, diffusion.model.residual_std, steps, cfg.diffusion,
                                         cfg.distill.mid_sigma)
                methods.append(LatentSurrogate(f"operator+student{steps}", autoencoder.model, operator.model,
                                               refiner=refine, refiner_evaluations=steps, seed=cfg.evaluate.seed))
        refiners, uids = pderefiner.methods(ctx, autoencoder.model)  # none unless diffusion.pderefiner.enabled
        methods += refiners
        upstream.update(uids)
    return methods, upstream


@dataclass
class Predictions:
    rollouts: torch.Tensor  # [M, N, S + 1, X] from frame 0; member 0 is the single-sample forecast
    pdebench: torch.Tensor  # [M, N, T - initial_step + 1, X] from frame initial_step - 1
    one_step: torch.Tensor  # [N, T' - 1, X], from true frames
    wall_s: float

    @property
    def rollout(self) -> torch.Tensor:
        return self.rollouts[0]


def is_stochastic(method: Surrogate) -> bool:
    """A method that samples noise: a `stochastic` attribute if it has one, else whether it has a refiner."""
    return bool(getattr(method, "stochastic", getattr(method, "refiner", None) is not None))


def _rollouts(method: Surrogate, u0: torch.Tensor, steps: int, members: int, device: torch.device,
              batch_size: int) -> torch.Tensor:
    """[members, N, steps + 1, X]; the members of a batch of trajectories run as one larger batch (one
    network call per step for all of them, each member its own noise)."""
    chunks = []
    for i in range(0, u0.shape[0], batch_size):
        start = u0[i : i + batch_size].to(device)
        frames = method.rollout(start.repeat(members, 1), steps).cpu()
        chunks.append(frames.reshape(members, start.shape[0], *frames.shape[1:]))
    return torch.cat(chunks, dim=1)


@torch.no_grad()
def predict(method: Surrogate, u: torch.Tensor, steps: int, device: torch.device, batch_size: int, *,
            trajectories: torch.Tensor | None = None, initial_step: int = 1, members: int = 1) -> Predictions:
    """Rollouts of u [N, >= steps + 1, X] from frame 0 and of `trajectories` [N, T, X] (default u) from frame
    initial_step - 1 to its end; `members` samples each if the method is stochastic."""
    started = time.perf_counter()
    trajectories = u if trajectories is None else trajectories
    members = members if is_stochastic(method) else 1
    reset = getattr(method, "reset_noise", None)
    if reset is not None:
        reset()  # every method sees the same noise stream, whatever ran before
    ours = _rollouts(method, u[:, 0], steps, members, device, batch_size)
    tail = trajectories.shape[1] - initial_step
    pdebench = _rollouts(method, trajectories[:, initial_step - 1], tail, members, device, batch_size)
    inputs = u[:, :steps].reshape(-1, u.shape[-1])
    one = torch.cat([method.one_step(inputs[i : i + batch_size].to(device)).cpu()
                     for i in range(0, inputs.shape[0], batch_size)])
    return Predictions(ours, pdebench, one.reshape(u.shape[0], steps, -1), time.perf_counter() - started)


def scoring_spec(cfg_thresholds: list[float], test_x: torch.Tensor, dt: float, initial_step: int,
                 frames: int) -> ScoringSpec:
    """Periodic grid x_j = x_0 + j dx: the domain length (PDEBench's Lx) is X dx."""
    n_points = int(test_x.shape[0])
    length = float(test_x[1] - test_x[0]) * n_points if n_points > 1 else 1.0
    return ScoringSpec(dt=dt, length=length, n_points=n_points, thresholds=tuple(cfg_thresholds),
                       initial_step=initial_step, frames=frames)


def score(method: Surrogate, preds: Predictions, u: torch.Tensor, trajectories: torch.Tensor, spec: ScoringSpec,
          scorer: Scorer) -> tuple[MethodMetrics, Scored, dict]:
    """One method's record, its scored statistics and its per-trajectory components."""
    parts = score_components(preds.rollouts, u, preds.one_step, trajectories, preds.pdebench, spec.initial_step)
    members = int(preds.rollouts.shape[0])
    scored = scorer.score(parts, statistics(spec, members))
    whole = with_context(trajectories, preds.pdebench[0], spec.initial_step)
    max_error = pdebench_metrics(whole, trajectories, spec.initial_step, spec.length)["pdebench_maxError"]
    record = method_metrics(method.name, scored, scorer, spec, nrmse_vs_lead=list(parts["nrmse_lead"].mean(axis=0)),
                            evaluations_per_step=method.evaluations_per_step, members=members,
                            stochastic=is_stochastic(method), max_error=max_error, wall_s=preds.wall_s)
    return record, scored, parts


@dataclass
class Evaluation:
    """Every method scored on one set of test trajectories, with the paired ratios between them."""

    results: dict[str, MethodMetrics]
    ratios: list[Comparison]
    rollouts: dict[str, torch.Tensor]  # single-sample rollouts from frame 0, for the plots
    components: dict[str, dict]  # per-trajectory components (metrics/per_trajectory.npz)
    spec: ScoringSpec
    u: torch.Tensor  # [N, S + 1, X]: the frames our protocol scores

    def report_facts(self, evaluate: EvaluateConfig) -> dict:
        """What metrics.json records about how the numbers were made."""
        return {"scoring": self.spec.as_dict(), "ensemble_size": evaluate.ensemble_size,
                "bootstrap_resamples": evaluate.bootstrap_resamples, "confidence_level": evaluate.confidence_level,
                "bootstrap_seed": evaluate.seed}


def evaluate_methods(methods: list[Surrogate], trajectories: torch.Tensor, x: torch.Tensor, dt: float,
                     evaluate: EvaluateConfig, device: torch.device, *, steps: int | None = None,
                     on_method: Callable[[int, MethodMetrics], None] | None = None) -> Evaluation:
    """Both protocols, ensembles and intervals for `methods` on test trajectories [N, T, X]: the evaluate
    stage's scoring, callable on any dataset (the evaluate-only CLI); `steps` defaults to rollout_steps."""
    steps = evaluate.rollout_steps if steps is None else steps
    u = trajectories[:, : steps + 1]
    if u.shape[1] < steps + 1:
        raise ValueError(f"a {steps}-step rollout needs {steps + 1} frames per trajectory, the data has "
                         f"{u.shape[1]}; lower evaluate.rollout_steps or load more frames")
    predicted_frames(trajectories.shape[1], evaluate.pdebench_initial_step)  # a clear error before any rollout
    spec = scoring_spec(evaluate.corr_thresholds, x, dt, evaluate.pdebench_initial_step, int(trajectories.shape[1]))
    scorer = Scorer(int(u.shape[0]), evaluate.bootstrap_resamples, evaluate.confidence_level, evaluate.seed)
    results: dict[str, MethodMetrics] = {}
    rollouts: dict[str, torch.Tensor] = {}
    scored: dict[str, Scored] = {}
    components: dict[str, dict] = {}
    for index, method in enumerate(methods):
        preds = predict(method, u, steps, device, evaluate.batch_size, trajectories=trajectories,
                        initial_step=evaluate.pdebench_initial_step, members=evaluate.ensemble_size)
        results[method.name], scored[method.name], components[method.name] = score(
            method, preds, u, trajectories, spec, scorer)
        rollouts[method.name] = preds.rollout
        if on_method is not None:
            on_method(index, results[method.name])
    declared = {m.name: getattr(m, "baseline", None) or DECLARED_BASELINES.get(m.name) for m in methods}
    plan = comparison_plan([m.name for m in methods], declared, spec.thresholds,
                           {name: r.stochastic for name, r in results.items()})
    return Evaluation(results, comparisons(plan, scored, scorer), rollouts, components, spec, u)


def run(ctx: StageContext) -> StageResult:
    cfg, runtime = ctx.cfg, ctx.runtime
    started = time.perf_counter()
    fno, fno_info = train_fno(ctx, load_split(cfg, ctx.data, "train").u)
    if not runtime.is_main:  # evaluation is cheap next to training: rank 0 does it alone
        runtime.barrier()
        return StageResult(STAGE, steps=fno_info["steps"])
    methods, upstream = build_methods(ctx, fno)
    test = load_split(cfg, ctx.data, "test")
    evaluate, steps = cfg.evaluate, cfg.evaluate.rollout_steps

    def progress(index: int, result: MethodMetrics) -> None:
        ctx.tracker.step(index + 1, len(methods))  # methods scored so far
        ctx.tracker.line(f"[{STAGE}] {result.summary_line()}")
        if index == 1:
            ctx.maybe_fail(STAGE, f"after evaluating {result.name}")

    found = evaluate_methods(methods, test.u, test.x, test.dt, evaluate, runtime.device, on_method=progress)
    results, ratios, u = found.results, found.ratios, found.u
    recon = reconstruction_nrmse(load_autoencoder(ctx).model, u, runtime.device, cfg.evaluate.batch_size)
    extra = {"autoencoder_recon_nrmse_test": recon, "fno_training": fno_info,
             "test_trajectories": int(u.shape[0]), "rollout_steps": steps, "dt": test.dt,
             **found.report_facts(evaluate)}
    files = write_reports(ctx.paths.metrics, results, ratios, found.rollouts, u, test.x, test.dt, extra,
                          components=found.components, plots_enabled=evaluate.plots)
    for path in files:
        ctx.checkpoints.upload_file(path, f"metrics/{path.name}")
    ctx.tracker.wandb.summary({f"{STAGE}/ratio/{c.method}/{c.baseline}/{c.metric}/{part}": value for c in ratios
                               for part, value in (("ratio", c.ratio), ("low", c.low), ("high", c.high))})
    ctx.tracker.wandb.summary({f"{STAGE}/{name}/{key}": value for name, metric in results.items()
                               for key, value in metric.scalars().items()})
    ctx.tracker.wandb.log_images({f"{STAGE}/{p.stem}": p for p in files if p.suffix == ".png"})
    upstream["data"] = ctx.data.fingerprint
    ctx.checkpoints.write_marker(STAGE, "final.json", {"uid": "", "upstream": upstream, "step": steps,
                                                            "config": ctx.config_dict})
    ctx.checkpoints.save(STAGE, "final.pt", {"config": ctx.config_dict, "uid": "", "upstream": upstream})
    runtime.barrier()
    return StageResult(STAGE, {"operator_rollout_nrmse": results["operator"].rollout_nrmse},
                       steps=len(methods), wall_s=time.perf_counter() - started)
