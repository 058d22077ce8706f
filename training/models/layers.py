"""Building blocks shared by the models: periodic 1D residual blocks and a noise-level embedding."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def periodic_conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv1d:
    """'Same' convolution with circular padding: Burgers lives on a periodic domain."""
    return nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, padding_mode="circular")


class ResBlock1d(nn.Module):
    """Pre-norm residual block; with `cond_dim`, a FiLM scale/shift from a conditioning vector."""

    def __init__(self, channels: int, kernel_size: int = 3, cond_dim: int = 0) -> None:
        super().__init__()
        groups = math.gcd(8, channels)
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = periodic_conv(channels, channels, kernel_size)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = periodic_conv(channels, channels, kernel_size)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.gelu(self.norm1(x)))
        if self.film is not None:
            scale, shift = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(F.gelu(self.norm2(h)))
        return x + h


class NoiseEmbedding(nn.Module):
    """Random Fourier features of EDM's c_noise = ln(sigma)/4, then an MLP."""

    def __init__(self, dim: int, features: int = 32) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(features) * 4.0)
        self.mlp = nn.Sequential(nn.Linear(2 * features, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * c_noise[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class ConvResNet(nn.Module):
    """in -> 1x1 lift -> residual blocks -> 1x1 projection (zero-initialised: starts as the zero map)."""

    def __init__(self, in_ch: int, out_ch: int, width: int, blocks: int, kernel_size: int, cond_dim: int = 0):
        super().__init__()
        self.lift = nn.Conv1d(in_ch, width, 1)
        self.blocks = nn.ModuleList(ResBlock1d(width, kernel_size, cond_dim) for _ in range(blocks))
        self.norm = nn.GroupNorm(math.gcd(8, width), width)
        self.project = nn.Conv1d(width, out_ch, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.lift(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.project(F.gelu(self.norm(h)))
