"""Stage 4: EDM diffusion model of the frozen operator's one-step residual, with an EMA copy for sampling.

Its training noise levels cover the levels its sampler visits (models.diffusion.training_sigma). With
`diffusion.pderefiner.enabled` it first trains PDE-Refiner and its MSE baseline (stages.pderefiner).
"""

from __future__ import annotations

import copy

import torch

from training.config import DiffusionConfig
from training.evaluation.surrogates import heun_refiner
from training.models.consistency import ema_update
from training.models.diffusion import ResidualDenoiser, edm_training_loss, training_sigma
from training.optim.loop import TrainSpec, train
from training.optim.schedule import BatchDraw
from training.run.context import StageContext, StageResult
from training.stages import pderefiner
from training.stages.upstream import load_autoencoder, load_latents, load_operator

STAGE = "diffusion"


@torch.no_grad()
def residual_pairs(operator: torch.nn.Module, z: torch.Tensor, device: torch.device, unroll: int = 1,
                   chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs for the refiner, in normalised latent units.

    For j = 0 .. unroll-1, prev is the operator's own j-step prediction of x_{t+j} from the true x_t
    (j = 0: the true state), pred = op(prev), and the residual is x_{t+j+1} - pred. With unroll > 1 the
    refiner also learns to pull a drifting rollout back, which is where it is used at evaluation.
    Returns flat tensors: residual [M, C, L] and cond = [pred, prev] [M, 2C, L], on `device`.
    """
    x = operator.normalise(z.to(device))
    frames = x.shape[1]
    residuals, conds = [], []
    state = x[:, :-1]
    for j in range(min(unroll, frames - 1)):
        prev = state[:, : frames - 1 - j]
        flat = prev.reshape(-1, *x.shape[2:])
        pred = torch.cat([operator(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)])
        pred = pred.reshape(prev.shape)
        residuals.append((x[:, j + 1 :] - pred).reshape(-1, *x.shape[2:]))
        conds.append(torch.cat([pred, prev], dim=2).reshape(-1, 2 * x.shape[2], x.shape[3]))
        state = pred
    return torch.cat(residuals), torch.cat(conds)


def noise_levels(draw: BatchDraw, cfg: DiffusionConfig) -> torch.Tensor:
    """The training noise levels of one step's batch [B] (what the tests check covers the sampler)."""
    return training_sigma(cfg, draw.randn(), draw.rand(), draw.rand())


def run(ctx: StageContext) -> StageResult:
    cfg, device = ctx.cfg, ctx.runtime.device
    autoencoder = load_autoencoder(ctx)
    operator = load_operator(ctx)
    latents = load_latents(ctx, autoencoder.uid)
    # Before this stage's own final.pt, which marks the whole stage finished.
    extra_metrics = (pderefiner.train_all(ctx, latents["train"], autoencoder.uid)
                     if cfg.diffusion.pderefiner.enabled else {})
    residual, cond = residual_pairs(operator.model, latents["train"], device, cfg.diffusion.cond_unroll)
    residual_std = residual.std().clamp_min(1e-8)
    x0 = residual / residual_std  # unit std, so sigma_data = 1
    model = ResidualDenoiser(residual.shape[1], cfg.diffusion).to(device)
    model.residual_std.fill_(float(residual_std))
    ema = copy.deepcopy(model).requires_grad_(False)
    item_shape = tuple(x0.shape[1:])

    def loss_fn(net: torch.nn.Module, draw: BatchDraw) -> torch.Tensor:
        rows = draw.randint(x0.shape[0]).to(device)
        return edm_training_loss(net, x0[rows], cond[rows], noise_levels(draw, cfg.diffusion),
                                 draw.randn(*item_shape))

    spec = TrainSpec(stage=STAGE, kind=STAGE, loop=cfg.diffusion, model=model, loss_fn=loss_fn,
                     aux_modules={"ema": ema}, after_step=lambda: ema_update(ema, model, cfg.diffusion.ema_decay),
                     upstream={"autoencoder": autoencoder.uid, "operator": operator.uid}, seed_salt=4)
    outcome = train(ctx, spec)
    metrics = {"final_loss": outcome.final_loss, "first_loss": outcome.first_loss,
               "residual_std": float(residual_std), **extra_metrics,
               **refinement_check(ctx, operator.model, ema, latents["val"])}
    ctx.tracker.line(
        f"[{STAGE}] one-step latent MSE (val): operator {metrics['val_latent_mse_operator']:.4e}, "
        f"operator+diffusion {metrics['val_latent_mse_refined']:.4e}"
    )
    ctx.tracker.log_metrics({f"{STAGE}/{k}": v for k, v in metrics.items() if k.startswith("val_")})
    return StageResult(STAGE, metrics, steps=outcome.steps, wall_s=outcome.wall_s,
                       samples_per_s=outcome.samples_per_s)


@torch.no_grad()
def refinement_check(ctx: StageContext, operator: torch.nn.Module, denoiser: torch.nn.Module,
                     z_val: torch.Tensor, limit: int = 2048) -> dict[str, float]:
    """One-step error in normalised latent units on val, with and without the Heun refinement."""
    cfg, device = ctx.cfg.diffusion, ctx.runtime.device
    denoiser.eval()
    residual, cond = residual_pairs(operator, z_val, device)
    residual, cond = residual[:limit], cond[:limit]
    refine = heun_refiner(denoiser, cfg)
    generator = torch.Generator(device=device).manual_seed(ctx.cfg.evaluate.seed)
    refined = refine(cond[:, : residual.shape[1]], cond[:, residual.shape[1] :], generator)
    return {
        "val_latent_mse_operator": float((residual**2).mean()),
        "val_latent_mse_refined": float(((residual - refined) ** 2).mean()),
    }
