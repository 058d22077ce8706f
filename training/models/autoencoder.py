"""Conv1d autoencoder: a field u[X] <-> a latent z[latent_dim, X / 2**levels] on a periodic grid."""

from __future__ import annotations

import torch
from torch import nn

from training.config import AutoencoderConfig
from training.models.layers import ResBlock1d, periodic_conv


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [periodic_conv(1, cfg.width, 5)]
        for _ in range(cfg.levels):
            # kernel 4, stride 2, circular padding 1: exactly halves an even periodic grid. Downsampling
            # before the residual blocks keeps the full-resolution work to two convolutions.
            layers.append(nn.Conv1d(cfg.width, cfg.width, 4, stride=2, padding=1, padding_mode="circular"))
            layers += [ResBlock1d(cfg.width, 5) for _ in range(cfg.blocks)]
        layers += [nn.GELU(), nn.Conv1d(cfg.width, cfg.latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u.unsqueeze(1))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, cfg.width, 1)]
        for _ in range(cfg.levels):
            layers += [ResBlock1d(cfg.width, 5) for _ in range(cfg.blocks)]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), periodic_conv(cfg.width, cfg.width, 3)]
        layers += [nn.GELU(), periodic_conv(cfg.width, cfg.width, 5), nn.GELU(), periodic_conv(cfg.width, 1, 5)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


class Autoencoder(nn.Module):
    """Normalises u with training-set statistics (stored as buffers) before encoding."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("u_mean", torch.zeros(()))
        self.register_buffer("u_std", torch.ones(()))

    def set_stats(self, mean: float, std: float) -> None:
        self.u_mean.fill_(mean)
        self.u_std.fill_(max(std, 1e-6))

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        return self.encoder((u - self.u_mean) / self.u_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) * self.u_std + self.u_mean

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(u))


def latent_length(resolution: int, cfg: AutoencoderConfig) -> int:
    return resolution // 2**cfg.levels
