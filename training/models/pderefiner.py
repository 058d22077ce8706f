"""PDE-Refiner (Lippe et al. 2023, "Modeling Accurate Long Rollouts with Temporal Neural PDE Solvers").

One network NN(u_tilde, z_t, k) on the normalised latent grid. The target is the one-step change
y = (z_{t+1} - z_t) / delta_std (unit std; pdearena's `predict_difference`). Training draws
k ~ U{0..K} per item:
  k = 0:  NN(0, z_t, 0) is regressed on y (MSE): the plain one-step prediction;
  k >= 1: u_tilde = y + sigma_k eps with sigma_k = min_noise^(k/K), and NN(u_tilde, z_t, k) is
          regressed on eps, so level k learns the parts of y of amplitude ~sigma_k.
Inference runs the same K + 1 evaluations: y^0 = NN(0, z_t, 0), then for k = 1..K
  y^k = (y^{k-1} + sigma_k eps) - sigma_k NN(y^{k-1} + sigma_k eps, z_t, k).
With K = 0 the very same network is the MSE-trained baseline of the paper's comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import PDERefinerConfig
from training.models.layers import ConvResNet, NoiseEmbedding


def refinement_sigmas(levels: int, min_noise: float) -> torch.Tensor:
    """sigma_k = min_noise^(k/K) for k = 1..K (descending); empty for K = 0."""
    k = torch.arange(1, levels + 1, dtype=torch.float64)
    return (min_noise ** (k / max(levels, 1))).float()


class PDERefiner(nn.Module):
    """NN(u_tilde, z_t, k): a FiLM-conditioned periodic conv ResNet, k embedded as k / K."""

    def __init__(self, latent_dim: int, cfg: PDERefinerConfig, levels: int | None = None) -> None:
        super().__init__()
        self.levels = cfg.levels if levels is None else levels
        self.embed = NoiseEmbedding(cfg.width)
        self.net = ConvResNet(2 * latent_dim, latent_dim, cfg.width, cfg.blocks, cfg.kernel_size, cond_dim=cfg.width)
        self.register_buffer("sigmas", refinement_sigmas(self.levels, cfg.min_noise))
        # The latent normalisation (as the operator's: per channel, train split) and the change's std.
        self.register_buffer("z_mean", torch.zeros(1, latent_dim, 1))
        self.register_buffer("z_std", torch.ones(1, latent_dim, 1))
        self.register_buffer("delta_std", torch.ones(()))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, delta_std: torch.Tensor) -> None:
        self.z_mean.copy_(mean.reshape_as(self.z_mean))
        self.z_std.copy_(std.clamp_min(1e-6).reshape_as(self.z_std))
        self.delta_std.copy_(delta_std.clamp_min(1e-8))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.z_std + self.z_mean

    def forward(self, noisy: torch.Tensor, prev: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """k = 0 rows: the prediction of y (noisy is ignored, fed as zeros); k >= 1 rows: the noise."""
        noisy = torch.where((k == 0).view(-1, 1, 1), torch.zeros_like(noisy), noisy)
        return self.net(torch.cat([noisy, prev], dim=1), self.embed(k.float() / max(self.levels, 1)))

    def predict(self, prev: torch.Tensor) -> torch.Tensor:
        """The k = 0 (MSE) prediction of z_{t+1} from z_t, in normalised latent units: 1 evaluation."""
        zero = torch.zeros(prev.shape[0], dtype=torch.long, device=prev.device)
        return prev + self.delta_std * self(torch.zeros_like(prev), prev, zero)

    def refine(self, prev: torch.Tensor, first: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Levels k = 1..K from the k = 0 prediction `first` of z_{t+1}: K evaluations."""
        y = (first - prev) / self.delta_std
        for k in range(1, self.levels + 1):
            sigma = self.sigmas[k - 1]
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            noisy = y + sigma * noise
            level = torch.full((y.shape[0],), k, dtype=torch.long, device=y.device)
            y = noisy - sigma * self(noisy, prev, level)
        return prev + self.delta_std * y

    def sample(self, prev: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The whole procedure: K + 1 evaluations."""
        return self.refine(prev, self.predict(prev), generator)


def pderefiner_loss(model: nn.Module, sigmas: torch.Tensor, prev: torch.Tensor, target: torch.Tensor, k: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
    """Lippe et al.'s loss for a batch with levels k [B] drawn uniformly from 0..K (draws as arguments).

    `target` is the unit-std change y; k = 0 rows regress y, the others the noise added at sigma_k.
    `model` may be a DDP/compiled wrapper, so the sigmas come in explicitly.
    """
    padded = torch.cat([torch.zeros(1, device=sigmas.device, dtype=sigmas.dtype), sigmas])
    sigma = padded[k].view(-1, 1, 1)
    is_mse = (k == 0).view(-1, 1, 1)
    noisy = target + sigma * noise
    goal = torch.where(is_mse, target, noise)
    return ((model(noisy, prev, k) - goal) ** 2).mean()
