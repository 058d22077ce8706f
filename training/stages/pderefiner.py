"""PDE-Refiner and its same-backbone MSE baseline: trained by the diffusion stage, scored by evaluate.

Not a stage of its own: with `diffusion.pderefiner.enabled` the diffusion stage trains them first, into
checkpoints/diffusion/pderefiner_final.pt and pderefiner_mse_final.pt, before its own final.pt marks
the stage finished (so a run interrupted between them resumes here, not past them). They learn
z_{t+1} from z_t on the latent cache, independent of the operator.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from training.evaluation.surrogates import LatentSurrogate, Surrogate
from training.models.autoencoder import Autoencoder
from training.models.consistency import ema_update
from training.models.pderefiner import PDERefiner, pderefiner_loss
from training.optim.loop import LoopOutcome, TrainSpec, train
from training.optim.schedule import BatchDraw
from training.run.context import StageContext
from training.stages.upstream import MissingUpstreamError

FOLDER = "diffusion"  # the stage that trains them: its config section holds theirs
KIND = "diffusion"
NAMES = {"pderefiner": "pderefiner", "pderefiner-mse": "pderefiner_mse"}  # method -> checkpoint prefix


def pairs(z: torch.Tensor, model: PDERefiner, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(prev [M, C, L], y [M, C, L]): every consecutive pair of z [N, T, C, L], y the unit-std change."""
    x = model.normalise(z.to(device))
    prev = x[:, :-1].reshape(-1, *x.shape[2:])
    delta = (x[:, 1:] - x[:, :-1]).reshape(-1, *x.shape[2:])
    return prev, delta / model.delta_std


def build(z_train: torch.Tensor, ctx: StageContext, levels: int) -> PDERefiner:
    """A fresh model with the train split's per-channel latent statistics and change std."""
    cfg = ctx.cfg.diffusion.pderefiner
    model = PDERefiner(z_train.shape[2], cfg, levels=levels)
    mean, std = z_train.mean(dim=(0, 1, 3)), z_train.std(dim=(0, 1, 3))
    model.set_stats(mean, std, torch.ones(()))
    x = model.normalise(z_train)
    model.set_stats(mean, std, (x[:, 1:] - x[:, :-1]).std())
    return model.to(ctx.runtime.device)


def drop_if_other_upstream(ctx: StageContext, name: str, upstream: dict[str, str]) -> None:
    """train() reuses a matching final.pt or resumes last.pt (it checks config and data); here the
    upstream models must match too."""
    store = ctx.checkpoints
    marker = store.read_marker(FOLDER, f"{name}_final.json") or {}
    made_from = {key: uid for key, uid in marker.get("upstream", {}).items() if key != "data"}
    if store.exists(FOLDER, f"{name}_final.pt") and made_from != upstream:
        ctx.tracker.line(f"[{FOLDER}] {name}_final.pt was made from another autoencoder: training again")
        store.remove(FOLDER, f"{name}_final.pt")
        store.remove(FOLDER, f"{name}_final.json")
    if store.exists(FOLDER, f"{name}_last.pt"):
        payload = torch.load(store.path(FOLDER, f"{name}_last.pt"), map_location="cpu", weights_only=True)
        if payload.get("upstream") != upstream:
            store.remove(FOLDER, f"{name}_last.pt")
    ctx.runtime.barrier()


def train_one(ctx: StageContext, z_train: torch.Tensor, upstream: dict[str, str], method: str,
              levels: int, seed_salt: int) -> LoopOutcome:
    """Trains NN over k ~ U{0..levels} (levels 0: the MSE baseline), in fp32: sigma_K is far below bf16's
    resolution, so autocast would erase the finest refinement levels."""
    cfg, device, name = ctx.cfg.diffusion.pderefiner, ctx.runtime.device, NAMES[method]
    drop_if_other_upstream(ctx, name, upstream)
    model = build(z_train, ctx, levels)
    prev, y = pairs(z_train, model, device)
    sigmas = model.sigmas
    ema = copy.deepcopy(model).requires_grad_(False)
    item_shape = tuple(y.shape[1:])

    def loss_fn(net: nn.Module, draw: BatchDraw) -> torch.Tensor:
        rows = draw.randint(y.shape[0]).to(device)
        k = draw.randint(levels + 1).to(device)
        return pderefiner_loss(net, sigmas, prev[rows], y[rows], k, draw.randn(*item_shape))

    spec = TrainSpec(stage=FOLDER, kind=KIND, loop=cfg, model=model, loss_fn=loss_fn, folder=FOLDER, name=name,
                     aux_modules={"ema": ema}, after_step=lambda: ema_update(ema, model, cfg.ema_decay),
                     upstream=upstream, seed_salt=seed_salt, autocast=False)
    return train(ctx, spec)


def train_all(ctx: StageContext, z_train: torch.Tensor, autoencoder_uid: str) -> dict[str, float]:
    """PDE-Refiner, then (with mse_baseline) the same backbone on k = 0 alone; their metrics for the stage."""
    cfg = ctx.cfg.diffusion.pderefiner
    upstream = {"autoencoder": autoencoder_uid}
    metrics: dict[str, float] = {}
    plan = [("pderefiner", cfg.levels, 7)] + ([("pderefiner-mse", 0, 8)] if cfg.mse_baseline else [])
    for method, levels, salt in plan:
        outcome = train_one(ctx, z_train, upstream, method, levels, salt)
        metrics[f"{NAMES[method]}_final_loss"] = outcome.final_loss
        metrics[f"{NAMES[method]}_first_loss"] = outcome.first_loss
        metrics[f"{NAMES[method]}_steps"] = outcome.steps
    return metrics


def load(ctx: StageContext, method: str) -> tuple[PDERefiner, str]:
    """The EMA weights (what samples) and the uid of a trained PDE-Refiner or its MSE baseline."""
    name = NAMES[method]
    if not ctx.checkpoints.exists(FOLDER, f"{name}_final.pt"):
        raise MissingUpstreamError(f"{ctx.checkpoints.path(FOLDER, f'{name}_final.pt')} not found: run the "
                                "'diffusion' stage with diffusion.pderefiner.enabled: true first")
    payload = ctx.checkpoints.load(FOLDER, f"{name}_final.pt", config=ctx.config_dict, kind=KIND)
    cfg = ctx.cfg.diffusion.pderefiner
    model = PDERefiner(ctx.cfg.autoencoder.latent_dim, cfg, levels=cfg.levels if method == "pderefiner" else 0)
    model.load_state_dict(payload["models"]["ema"])
    return model.to(ctx.runtime.device).eval(), payload["uid"]


class FirstEstimate(nn.Module):
    """The k = 0 prediction as a latent stepper (normalise, step, denormalise), for LatentSurrogate."""

    def __init__(self, model: PDERefiner) -> None:
        super().__init__()
        self.model = model

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.normalise(z)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.denormalise(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(x)


def surrogate(method: str, model: PDERefiner, autoencoder: Autoencoder, seed: int) -> Surrogate:
    """k = 0 as the stepper and levels 1..K as the refiner: 1 + K evaluations per time step."""
    if model.levels == 0:
        return LatentSurrogate(method, autoencoder, FirstEstimate(model))

    def refine(pred: torch.Tensor, prev: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return model.refine(prev, pred, generator) - pred

    return LatentSurrogate(method, autoencoder, FirstEstimate(model), refiner=refine,
                           refiner_evaluations=model.levels, seed=seed)


def methods(ctx: StageContext, autoencoder: Autoencoder) -> tuple[list[Surrogate], dict[str, str]]:
    """What evaluate adds when diffusion.pderefiner is enabled (else nothing), and their uids."""
    cfg = ctx.cfg.diffusion.pderefiner
    if not cfg.enabled:
        return [], {}
    found, uids = [], {}
    for method in ("pderefiner", "pderefiner-mse") if cfg.mse_baseline else ("pderefiner",):
        model, uid = load(ctx, method)
        found.append(surrogate(method, model, autoencoder, ctx.cfg.evaluate.seed))
        uids[method] = uid
    return found, uids
