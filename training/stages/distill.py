"""Stage 5: consistency distillation of the diffusion model's procedure (EMA teacher) into a 1-2 evaluation student.

The teacher is scored as "estimate at sigma_max, re-noise to refine_sigma, Heun"; the student learns that
procedure (see models.consistency), so it is scored for the sampler it was distilled from.
"""

from __future__ import annotations

import copy

import torch

from training.models.consistency import (
    ConsistencyStudent,
    consistency_distillation_loss,
    distill_schedule,
    ema_update,
    refines,
    student_refiner,
)
from training.optim.loop import TrainSpec, train
from training.optim.schedule import BatchDraw
from training.run.context import StageContext, StageResult
from training.stages.diffusion import residual_pairs
from training.stages.upstream import load_autoencoder, load_diffusion, load_latents, load_operator

STAGE = "distill"


def run(ctx: StageContext) -> StageResult:
    cfg, device = ctx.cfg, ctx.runtime.device
    autoencoder = load_autoencoder(ctx)
    operator = load_operator(ctx)
    teacher = load_diffusion(ctx)
    teacher.model.requires_grad_(False)
    latents = load_latents(ctx, autoencoder.uid)
    residual, cond = residual_pairs(operator.model, latents["train"], device, cfg.diffusion.cond_unroll)
    residual_std = teacher.model.residual_std
    x0 = residual / residual_std
    # The student starts from the teacher's weights; the target is an EMA of the student.
    student = ConsistencyStudent(copy.deepcopy(teacher.model.net), cfg.diffusion.sigma_min).to(device)
    student.net.requires_grad_(True)
    target = copy.deepcopy(student).requires_grad_(False)
    schedule = distill_schedule(cfg.diffusion, cfg.distill.num_scales).to(device)
    item_shape = tuple(x0.shape[1:])
    keep_estimate = refines(cfg.diffusion)

    def loss_fn(net: torch.nn.Module, draw: BatchDraw) -> torch.Tensor:
        rows = draw.randint(x0.shape[0]).to(device)
        index = draw.randint(cfg.distill.num_scales - 1).to(device)
        noise = draw.randn(*item_shape)
        # A refining teacher's procedure starts with its estimate from pure noise: the student keeps it.
        estimate_noise = draw.randn(*item_shape) if keep_estimate else None
        return consistency_distillation_loss(net, target, teacher.model, x0[rows], cond[rows], schedule, index,
                                             noise, estimate_noise, cfg.diffusion.sigma_max)

    spec = TrainSpec(stage=STAGE, kind=STAGE, loop=cfg.distill, model=student, loss_fn=loss_fn,
                     aux_modules={"target": target},
                     after_step=lambda: ema_update(target, student, cfg.distill.target_ema),
                     upstream={"autoencoder": autoencoder.uid, "operator": operator.uid, "diffusion": teacher.uid},
                     extra={"residual_std": float(residual_std)}, seed_salt=5)
    outcome = train(ctx, spec)
    student.eval()
    metrics = {"final_loss": outcome.final_loss, "first_loss": outcome.first_loss,
               **student_check(ctx, operator.model, student, residual_std, latents["val"])}
    ctx.tracker.line(
        f"[{STAGE}] one-step latent MSE (val): operator {metrics['val_latent_mse_operator']:.4e}, "
        + ", ".join(f"student {k} step(s) {metrics[f'val_latent_mse_student_{k}']:.4e}"
                    for k in cfg.distill.student_steps)
    )
    ctx.tracker.log_metrics({f"{STAGE}/{k}": v for k, v in metrics.items() if k.startswith("val_")})
    return StageResult(STAGE, metrics, steps=outcome.steps, wall_s=outcome.wall_s,
                       samples_per_s=outcome.samples_per_s)


@torch.no_grad()
def student_check(ctx: StageContext, operator: torch.nn.Module, student: torch.nn.Module,
                  residual_std: torch.Tensor, z_val: torch.Tensor, limit: int = 2048) -> dict[str, float]:
    device = ctx.runtime.device
    residual, cond = residual_pairs(operator, z_val, device)
    residual, cond = residual[:limit], cond[:limit]
    channels = residual.shape[1]
    out = {"val_latent_mse_operator": float((residual**2).mean())}
    for steps in ctx.cfg.distill.student_steps:
        refine = student_refiner(student, residual_std, steps, ctx.cfg.diffusion, ctx.cfg.distill.mid_sigma)
        generator = torch.Generator(device=device).manual_seed(ctx.cfg.evaluate.seed)
        refined = refine(cond[:, :channels], cond[:, channels:], generator)
        out[f"val_latent_mse_student_{steps}"] = float(((residual - refined) ** 2).mean())
    return out
