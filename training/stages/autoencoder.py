"""Stage 1: train the Conv1d autoencoder on single frames; report reconstruction nRMSE in physical space."""

from __future__ import annotations

import torch

from training.evaluation.metrics import nrmse
from training.models.autoencoder import Autoencoder
from training.optim.loop import TrainSpec, train
from training.optim.schedule import BatchDraw
from training.run.context import StageContext, StageResult
from training.store.datafiles import load_split

STAGE = "autoencoder"


def run(ctx: StageContext) -> StageResult:
    cfg, device = ctx.cfg, ctx.runtime.device
    train_u = load_split(cfg, ctx.data, "train").u
    frames = train_u.reshape(-1, train_u.shape[-1]).to(device)
    model = Autoencoder(cfg.autoencoder).to(device)
    model.set_stats(float(frames.mean()), float(frames.std()))

    def loss_fn(net: torch.nn.Module, draw: BatchDraw) -> torch.Tensor:
        u = frames[draw.randint(frames.shape[0]).to(device)]
        # normalised units so the loss scale does not depend on the data's amplitude
        return (((net(u) - u) / model.u_std) ** 2).mean()

    outcome = train(ctx, TrainSpec(stage=STAGE, kind=STAGE, loop=cfg.autoencoder, model=model, loss_fn=loss_fn))
    val_nrmse = reconstruction_nrmse(model, load_split(cfg, ctx.data, "val").u, device, cfg.evaluate.batch_size)
    metrics = {"recon_nrmse_val": val_nrmse, "final_loss": outcome.final_loss, "first_loss": outcome.first_loss}
    ctx.tracker.line(f"[{STAGE}] reconstruction nRMSE (val, physical space) {val_nrmse:.4e}")
    ctx.tracker.log_metrics({f"{STAGE}/recon_nrmse_val": val_nrmse})
    return StageResult(STAGE, metrics, steps=outcome.steps, wall_s=outcome.wall_s,
                       samples_per_s=outcome.samples_per_s)


@torch.no_grad()
def reconstruction_nrmse(model: Autoencoder, u: torch.Tensor, device: torch.device, batch_size: int) -> float:
    """nRMSE of decode(encode(u)) over every frame of `u` [N, T, X], in physical units."""
    model.eval()
    frames = u.reshape(-1, u.shape[-1])
    recon = torch.cat([model(frames[i : i + batch_size * 8].to(device)).float().cpu()
                       for i in range(0, frames.shape[0], batch_size * 8)])
    return float(nrmse(recon, frames))
