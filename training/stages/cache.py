"""Stage 2: encode every split into the latent cache (rank 0), atomically, keyed by data and encoder.

An up-to-date cache is kept unless RESET_CACHE=1 (the default, as in the old workflow); a stale one
(other data files or another encoder checkpoint) is always rebuilt, and the log says why.
"""

from __future__ import annotations

import time

import torch

from training.run.context import StageContext, StageResult
from training.stages.upstream import load_autoencoder
from training.store.datafiles import SPLITS, load_split
from training.store.latent_cache import LatentCache, cache_key, key_differences, read_key, write_cache

STAGE = "cache"


def run(ctx: StageContext) -> StageResult:
    started = time.perf_counter()
    encoder = load_autoencoder(ctx)
    wanted = cache_key(ctx.cfg, ctx.data, encoder.uid)
    differing = key_differences(read_key(ctx.paths.cache), wanted)
    if not differing and not ctx.reset_cache:
        ctx.tracker.line(f"[{STAGE}] {ctx.paths.cache} is up to date (RESET_CACHE=0): kept")
        return StageResult(STAGE, {"rebuilt": 0.0}, skipped=True)
    if differing == ["no cache"]:
        reason = "no cache yet"
    else:
        reason = "RESET_CACHE=1" if not differing else f"{', '.join(differing)} changed"
    ctx.tracker.line(f"[{STAGE}] building the latent cache ({reason})")
    frames_done = 0
    if ctx.runtime.is_main:
        latents = {}
        for index, split in enumerate(SPLITS):
            u = load_split(ctx.cfg, ctx.data, split).u
            latents[split] = encode_trajectories(encoder.model, u, ctx.runtime.device, ctx.cfg.evaluate.batch_size)
            frames_done += u.shape[0] * u.shape[1]
            ctx.tracker.step(index + 1, len(SPLITS))
            ctx.tracker.line(f"[{STAGE}] encoded {split}: {u.shape[0]} trajectories x {u.shape[1]} frames "
                             f"({index + 1}/{len(SPLITS)})")
            if index == 0:
                ctx.maybe_fail(STAGE, f"after encoding the {split} split")
        write_cache(ctx.paths.cache, LatentCache(latents=latents, key=wanted))
        shapes = ", ".join(f"{split} {tuple(z.shape)}" for split, z in latents.items())
        ctx.tracker.line(f"[{STAGE}] wrote {ctx.paths.cache}/latents.pt: {shapes}")
    ctx.runtime.barrier()
    wall = time.perf_counter() - started
    return StageResult(STAGE, {"rebuilt": 1.0}, steps=len(SPLITS), wall_s=wall,
                       samples_per_s=frames_done / wall if frames_done else None)


@torch.no_grad()
def encode_trajectories(model: torch.nn.Module, u: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """u [N, T, X] -> z [N, T, C, L] in float32 (no autocast: the cache is the operator's training data)."""
    frames = u.reshape(-1, u.shape[-1])
    chunk = batch_size * 8
    z = torch.cat([model.encode(frames[i : i + chunk].to(device)).float().cpu()
                   for i in range(0, frames.shape[0], chunk)])
    return z.reshape(u.shape[0], u.shape[1], *z.shape[1:]).contiguous()
