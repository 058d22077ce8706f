"""Latent time stepper: z_{t+1} = z_t + f(z_t), in latent units normalised per channel."""

from __future__ import annotations

import torch
from torch import nn

from training.config import OperatorConfig
from training.models.layers import ConvResNet


class LatentStepper(nn.Module):
    """Residual update on the latent grid; the last layer starts at zero, so it starts as persistence."""

    def __init__(self, latent_dim: int, cfg: OperatorConfig) -> None:
        super().__init__()
        self.net = ConvResNet(latent_dim, latent_dim, cfg.width, cfg.blocks, cfg.kernel_size)
        self.register_buffer("z_mean", torch.zeros(1, latent_dim, 1))
        self.register_buffer("z_std", torch.ones(1, latent_dim, 1))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.z_mean.copy_(mean.reshape_as(self.z_mean))
        self.z_std.copy_(std.clamp_min(1e-6).reshape_as(self.z_std))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.z_std + self.z_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step in normalised latent units."""
        return x + self.net(x)
