"""EDM diffusion of the operator's residual in latent space (Karras et al. 2022), PDE-Refiner style.

The data x is the residual r = z_{t+1} - op(z_t) in normalised latent units, divided by its training
std so that sigma_data = 1. The denoiser is conditioned on the operator's prediction op(z_t) and on
the previous state z_t; sampling runs Heun's 2nd-order solver on the Karras sigma schedule, so the
operator's output is refined by a few denoising steps.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import DiffusionConfig
from training.models.layers import ConvResNet, NoiseEmbedding

SIGMA_DATA = 1.0  # residuals are scaled to unit std before diffusion


def edm_scalings(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, ...]:
    """EDM preconditioning: c_skip, c_out, c_in, c_noise for noise level sigma (shape [B])."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2: unit loss at every level."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < n, then a final 0."""
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    else:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


class ResidualNet(nn.Module):
    """F(c_in x, c_noise | op_pred, prev): a FiLM-conditioned periodic conv ResNet on the latent grid."""

    def __init__(self, latent_dim: int, width: int, blocks: int, kernel_size: int) -> None:
        super().__init__()
        self.embed = NoiseEmbedding(width)
        self.net = ConvResNet(3 * latent_dim, latent_dim, width, blocks, kernel_size, cond_dim=width)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, cond], dim=1), self.embed(c_noise))


class ResidualDenoiser(nn.Module):
    """D(x; sigma, cond) = c_skip x + c_out F(c_in x, c_noise, cond); cond = [op_pred, prev] (2C channels)."""

    def __init__(self, latent_dim: int, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.net = ResidualNet(latent_dim, cfg.width, cfg.blocks, cfg.kernel_size)
        self.register_buffer("residual_std", torch.ones(()))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma)
        view = (-1, 1, 1)
        return c_skip.view(view) * x + c_out.view(view) * self.net(c_in.view(view) * x, c_noise, cond)


def sampler_levels(cfg: DiffusionConfig) -> torch.Tensor:
    """The noise levels refine_sample evaluates the denoiser at (descending, all > 0)."""
    if cfg.refine_sigma >= cfg.sigma_max:
        return karras_sigmas(cfg.sample_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)[:-1]
    refinement = karras_sigmas(cfg.sample_steps, cfg.sigma_min, cfg.refine_sigma, cfg.rho)[:-1]
    return torch.cat([torch.tensor([cfg.sigma_max]), refinement])


def training_sigma(cfg: DiffusionConfig, normal: torch.Tensor, pick: torch.Tensor,
                   uniform: torch.Tensor) -> torch.Tensor:
    """Training noise levels [B]: a mixture that covers every level the sampler visits.

    EDM's log-normal (p_mean -1.2, p_std 1.2) suits sampling from sigma_max down, but our sampler
    spends its first evaluation at sigma_max (where 0.18 % of log-normal draws fall) and its Heun run
    below refine_sigma (under 1 % of draws below 0.018). So a share `sigma_sampler_weight` is drawn
    exactly from sampler_levels (each visited level gets its share), a share `sigma_uniform_weight`
    log-uniformly on [sigma_min, sigma_max] (the continuum between them, which the student's
    distillation schedule queries), and the rest from the log-normal (the mid range, where EDM found
    most of the learning). The draws come in as arguments (normal, pick and uniform, each [B]) so
    the trainer controls and can replay them. Weights 0 and 0 are plain EDM.
    """
    lognormal = (cfg.p_mean + cfg.p_std * normal).exp()
    lo, hi = torch.log(torch.tensor(cfg.sigma_min)), torch.log(torch.tensor(cfg.sigma_max))
    loguniform = (lo + (hi - lo) * uniform).exp()
    levels = sampler_levels(cfg).to(uniform.device)
    exact = levels[(uniform * len(levels)).long().clamp_max(len(levels) - 1)]
    sampler_cut = cfg.sigma_sampler_weight
    uniform_cut = sampler_cut + cfg.sigma_uniform_weight
    return torch.where(pick < sampler_cut, exact, torch.where(pick < uniform_cut, loguniform, lognormal))


def edm_training_loss(denoiser: nn.Module, x0: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """EDM loss at noise levels sigma [B]: lambda(sigma)-weighted MSE of D(x0 + sigma n) against x0."""
    noisy = x0 + sigma.view(-1, 1, 1) * noise
    denoised = denoiser(noisy, sigma, cond)
    per_item = ((denoised - x0) ** 2).mean(dim=(1, 2))
    return (edm_loss_weight(sigma) * per_item).mean()


@torch.no_grad()
def heun_sample(denoiser: nn.Module, cond: torch.Tensor, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """EDM Algorithm 1 (deterministic Heun) from x at noise level sigmas[0] down to sigma = 0.

    Network evaluations: 2 per step except the last (Euler to sigma = 0): 2 * steps - 1.
    """
    batch = x.shape[0]
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = (x - denoiser(x, sigma.expand(batch), cond)) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_next - denoiser(x_next, sigma_next.expand(batch), cond)) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = x_next
    return x


@torch.no_grad()
def refine_sample(denoiser: nn.Module, cond: torch.Tensor, noises: tuple[torch.Tensor, torch.Tensor],
                  cfg: DiffusionConfig) -> torch.Tensor:
    """PDE-Refiner in EDM terms: a first estimate, then a few denoising steps from small noise.

    With refine_sigma < sigma_max: x0_hat = D(sigma_max * n0; sigma_max) is the denoiser's estimate from
    pure noise (its regression prediction of the residual); it is re-noised to refine_sigma and Heun
    runs `sample_steps` steps down to 0 on the Karras schedule, restoring the small, high-frequency
    parts that a regression blurs, without the sample variance of sampling from sigma_max.
    With refine_sigma >= sigma_max it is plain EDM sampling from sigma_max.
    """
    batch = cond.shape[0]
    if cfg.refine_sigma >= cfg.sigma_max:
        sigmas = karras_sigmas(cfg.sample_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(cond.device)
        return heun_sample(denoiser, cond, noises[0] * cfg.sigma_max, sigmas)
    top = torch.full((batch,), cfg.sigma_max, device=cond.device)
    first = denoiser(noises[0] * cfg.sigma_max, top, cond)
    sigmas = karras_sigmas(cfg.sample_steps, cfg.sigma_min, cfg.refine_sigma, cfg.rho).to(cond.device)
    return heun_sample(denoiser, cond, first + cfg.refine_sigma * noises[1], sigmas)


def refine_evaluations(cfg: DiffusionConfig) -> int:
    """Denoiser evaluations per time step of refine_sample."""
    heun = 2 * cfg.sample_steps - 1
    return heun if cfg.refine_sigma >= cfg.sigma_max else heun + 1
