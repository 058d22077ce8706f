"""Loading what earlier stages produced: their final checkpoints and the latent cache.

Each loader raises a clear error naming the missing file and the stage that makes it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from training.models.autoencoder import Autoencoder
from training.models.consistency import ConsistencyStudent
from training.models.diffusion import ResidualDenoiser
from training.models.operator import LatentStepper
from training.run.context import StageContext
from training.store.latent_cache import cache_key, load_cache


class MissingUpstreamError(RuntimeError):
    """A stage needs the output of an earlier stage that has not run (or not finished)."""


@dataclass
class Loaded:
    model: torch.nn.Module
    uid: str
    extra: dict


def _final(ctx: StageContext, stage: str) -> dict:
    if not ctx.checkpoints.exists(stage, "final.pt"):
        path = ctx.checkpoints.path(stage, "final.pt")
        raise MissingUpstreamError(f"{path} not found: run the '{stage}' stage first (or TRAIN_STAGE=all)")
    return ctx.checkpoints.load(stage, "final.pt", config=ctx.config_dict, kind=stage)


def load_autoencoder(ctx: StageContext) -> Loaded:
    payload = _final(ctx, "autoencoder")
    model = Autoencoder(ctx.cfg.autoencoder)
    model.load_state_dict(payload["models"]["model"])
    return Loaded(model.to(ctx.runtime.device).eval(), payload["uid"], payload["extra"])


def load_operator(ctx: StageContext) -> Loaded:
    payload = _final(ctx, "operator")
    model = LatentStepper(ctx.cfg.autoencoder.latent_dim, ctx.cfg.operator)
    model.load_state_dict(payload["models"]["model"])
    return Loaded(model.to(ctx.runtime.device).eval(), payload["uid"], payload["extra"])


def load_diffusion(ctx: StageContext) -> Loaded:
    """The EMA denoiser, which is what samples (the raw weights are kept in the checkpoint too)."""
    payload = _final(ctx, "diffusion")
    model = ResidualDenoiser(ctx.cfg.autoencoder.latent_dim, ctx.cfg.diffusion)
    model.load_state_dict(payload["models"]["ema"])
    return Loaded(model.to(ctx.runtime.device).eval(), payload["uid"], payload["extra"])


def load_student(ctx: StageContext) -> Loaded:
    payload = _final(ctx, "distill")
    teacher_like = ResidualDenoiser(ctx.cfg.autoencoder.latent_dim, ctx.cfg.diffusion)
    model = ConsistencyStudent(copy.deepcopy(teacher_like.net), ctx.cfg.diffusion.sigma_min)
    model.load_state_dict(payload["models"]["model"])
    return Loaded(model.to(ctx.runtime.device).eval(), payload["uid"], payload["extra"])


def load_latents(ctx: StageContext, encoder_uid: str) -> dict[str, torch.Tensor]:
    """The latent cache, refused (StaleCacheError) unless it was built from this data and this encoder."""
    return load_cache(ctx.paths.cache, cache_key(ctx.cfg, ctx.data, encoder_uid)).latents
