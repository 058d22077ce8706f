"""Learning-rate schedule as a small pure function (nanoGPT's get_lr), plus the per-step batch draw."""

from __future__ import annotations

import math

import torch

from training.config import TrainLoopConfig


def lr_factor(step: int, cfg: TrainLoopConfig) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at cfg.steps (multiplies cfg.lr)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.min_lr_ratio + 0.5 * (1 - cfg.min_lr_ratio) * (1 + math.cos(math.pi * progress))


class BatchDraw:
    """Random draws for one optimiser step, derived from (seed, step) alone.

    Every rank draws the whole global batch and keeps its own slice, so a resumed run replays the same
    batches without saving sampler state, and N DDP ranks see exactly the batch one process would.
    """

    def __init__(self, seed: int, step: int, global_batch: int, rank: int, world_size: int, device) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} DDP processes")
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        self.global_batch = global_batch
        per_rank = global_batch // world_size
        self.rows = slice(rank * per_rank, (rank + 1) * per_rank)
        self.device = device

    def randint(self, high: int) -> torch.Tensor:
        return torch.randint(high, (self.global_batch,), generator=self.generator)[self.rows]

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform on [0, 1), e.g. to pick a mixture component per row."""
        sample = torch.rand((self.global_batch, *shape), generator=self.generator)[self.rows]
        return sample.to(self.device, non_blocking=True)

    def randn(self, *shape: int) -> torch.Tensor:
        sample = torch.randn((self.global_batch, *shape), generator=self.generator)[self.rows]
        return sample.to(self.device, non_blocking=True)
