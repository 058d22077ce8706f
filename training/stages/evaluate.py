"""Stage 6: decoded, physical-space metrics on the held-out test split, against honest baselines.

Methods: persistence, an FNO (neuraloperator) trained here on the same data and step budget as the
operator, the operator alone, operator + diffusion refinement (Heun), operator + distilled student
(1 and 2 steps). Writes metrics/metrics.json, metrics/metrics.md and PNG plots, and logs them to W&B.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from training.context import StageContext, StageResult
from training.datafiles import load_split
from training.loop import TrainSpec, train
from training.metrics_report import MethodMetrics, compute_method_metrics, write_reports
from training.models.diffusion import refine_evaluations
from training.models.fno import FNOStepper
from training.pushforward import pushforward_loss
from training.schedule import BatchDraw
from training.stages.autoencoder import reconstruction_nrmse
from training.stages.upstream import load_autoencoder, load_diffusion, load_operator, load_student
from training.surrogates import (
    LatentSurrogate,
    Persistence,
    PhysicalStepper,
    Surrogate,
    heun_refiner,
    student_refiner,
)

STAGE = "evaluate"


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

    outcome = train(ctx, TrainSpec(stage=STAGE, kind="fno", loop=cfg.fno, model=model, loss_fn=loss_fn,
                                   folder=STAGE, name="fno", seed_salt=6,
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
                refine = student_refiner(student.model, diffusion.model.residual_std, steps,
                                         cfg.diffusion.sigma_max, cfg.distill.mid_sigma)
                methods.append(LatentSurrogate(f"operator+student{steps}", autoencoder.model, operator.model,
                                               refiner=refine, refiner_evaluations=steps, seed=cfg.evaluate.seed))
    return methods, upstream


@dataclass
class Predictions:
    rollout: torch.Tensor  # [N, S + 1, X]
    one_step: torch.Tensor  # [N, T - 1, X], from true frames
    wall_s: float


@torch.no_grad()
def predict(method: Surrogate, u: torch.Tensor, steps: int, device: torch.device, batch_size: int) -> Predictions:
    started = time.perf_counter()
    if isinstance(method, LatentSurrogate):
        method.reset_noise()  # every method sees the same noise stream, whatever ran before
    rollout = torch.cat([method.rollout(u[i : i + batch_size, 0].to(device), steps).cpu()
                         for i in range(0, u.shape[0], batch_size)])
    inputs = u[:, :-1].reshape(-1, u.shape[-1])
    one = torch.cat([method.one_step(inputs[i : i + batch_size].to(device)).cpu()
                     for i in range(0, inputs.shape[0], batch_size)])
    return Predictions(rollout, one.reshape(u.shape[0], u.shape[1] - 1, -1), time.perf_counter() - started)


def run(ctx: StageContext) -> StageResult:
    cfg, runtime = ctx.cfg, ctx.runtime
    started = time.perf_counter()
    fno, fno_info = train_fno(ctx, load_split(cfg, ctx.data, "train").u)
    if not runtime.is_main:  # evaluation is cheap next to training: rank 0 does it alone
        runtime.barrier()
        return StageResult(STAGE, steps=fno_info["steps"])
    methods, upstream = build_methods(ctx, fno)
    test = load_split(cfg, ctx.data, "test")
    steps = cfg.evaluate.rollout_steps
    u = test.u[:, : steps + 1]
    results: dict[str, MethodMetrics] = {}
    rollouts: dict[str, torch.Tensor] = {}
    for index, method in enumerate(methods):
        ctx.tracker.step(index, len(methods))
        preds = predict(method, u, steps, runtime.device, cfg.evaluate.batch_size)
        results[method.name] = compute_method_metrics(
            method.name, preds.rollout, u, preds.one_step, test.dt, cfg.evaluate.corr_thresholds,
            evaluations_per_step=method.evaluations_per_step, wall_s=preds.wall_s,
        )
        rollouts[method.name] = preds.rollout
        ctx.tracker.line(f"[{STAGE}] {results[method.name].summary_line()}")
        if index == 1:
            ctx.maybe_fail(STAGE, f"after evaluating {method.name}")
    recon = reconstruction_nrmse(load_autoencoder(ctx).model, u, runtime.device, cfg.evaluate.batch_size)
    extra = {"autoencoder_recon_nrmse_test": recon, "fno_training": fno_info,
             "test_trajectories": int(u.shape[0]), "rollout_steps": steps, "dt": test.dt}
    files = write_reports(ctx.paths.metrics, results, rollouts, u, test.x, test.dt, extra,
                          plots_enabled=cfg.evaluate.plots)
    for path in files:
        ctx.checkpoints.upload_file(path, f"metrics/{path.name}")
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
