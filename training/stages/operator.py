"""Stage 3: the latent time stepper, trained on the cache with a one-step plus pushforward loss.

Pushforward (Brandstetter et al. 2022): roll the operator K-1 steps without gradient from a true state,
then train the K-th step against the true z_{t+K}, so it learns to correct its own drift.
"""

from __future__ import annotations

import torch

from training.evaluation.metrics import nrmse
from training.evaluation.surrogates import LatentSurrogate
from training.models.operator import LatentStepper
from training.optim.loop import TrainSpec, train
from training.optim.pushforward import pushforward_loss
from training.optim.schedule import BatchDraw
from training.run.context import StageContext, StageResult
from training.stages.upstream import load_autoencoder, load_latents
from training.store.datafiles import load_split

STAGE = "operator"


def run(ctx: StageContext) -> StageResult:
    cfg, device = ctx.cfg, ctx.runtime.device
    autoencoder = load_autoencoder(ctx)
    latents = load_latents(ctx, autoencoder.uid)
    z = latents["train"]
    model = LatentStepper(z.shape[2], cfg.operator)
    model.set_stats(z.mean(dim=(0, 1, 3)), z.std(dim=(0, 1, 3)))
    model.to(device)
    zn = model.normalise(z.to(device))
    samples, frames = zn.shape[:2]
    unroll = cfg.operator.unroll_steps
    starts = frames - unroll

    def loss_fn(net: torch.nn.Module, draw: BatchDraw) -> torch.Tensor:
        flat = draw.randint(samples * starts).to(device)
        n, t = flat // starts, flat % starts
        x = zn[n, t]
        if cfg.operator.input_noise > 0:  # a perturbed start: trains the stepper to pull drift back
            x = x + cfg.operator.input_noise * draw.randn(*x.shape[1:])
        return pushforward_loss(net, x, zn[n, t + 1], zn[n, t + unroll], unroll,
                                far_weight=cfg.operator.unroll_weight)

    spec = TrainSpec(stage=STAGE, kind=STAGE, loop=cfg.operator, model=model, loss_fn=loss_fn,
                     upstream={"autoencoder": autoencoder.uid}, seed_salt=3)
    outcome = train(ctx, spec)
    model.eval()
    surrogate = LatentSurrogate(STAGE, autoencoder.model, model)
    val_u = load_split(cfg, ctx.data, "val").u
    one_step = one_step_nrmse(surrogate, val_u, device, cfg.evaluate.batch_size)
    ctx.tracker.line(f"[{STAGE}] one-step nRMSE (val, physical space) {one_step:.4e}")
    ctx.tracker.log_metrics({f"{STAGE}/one_step_nrmse_val": one_step})
    metrics = {"one_step_nrmse_val": one_step, "final_loss": outcome.final_loss, "first_loss": outcome.first_loss}
    return StageResult(STAGE, metrics, steps=outcome.steps, wall_s=outcome.wall_s,
                       samples_per_s=outcome.samples_per_s)


@torch.no_grad()
def one_step_nrmse(surrogate, u: torch.Tensor, device: torch.device, batch_size: int) -> float:
    """Mean nRMSE of u_{t+1} predicted from the true u_t, over all trajectories and times of u [N, T, X]."""
    inputs = u[:, :-1].reshape(-1, u.shape[-1])
    targets = u[:, 1:].reshape(-1, u.shape[-1])
    preds = torch.cat([surrogate.one_step(inputs[i : i + batch_size].to(device)).cpu()
                       for i in range(0, inputs.shape[0], batch_size)])
    return float(nrmse(preds, targets))
