"""Consistency distillation (Song et al. 2023) of the residual refiner's procedure into a 1-2 evaluation student.

The student f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in x, c_noise, cond) uses the
consistency-model boundary parametrisation, so f(x, sigma_min) = x exactly. Training pulls
f_theta(x_{t_{n+1}}, t_{n+1}) towards f_target(x_hat_{t_n}, t_n), where x_hat is one Heun step of the
frozen EDM teacher along the discretised Karras schedule, and f_target is an EMA of the student.

What is distilled is what the teacher runs (models.diffusion.refine_sample). With refine_sigma <
sigma_max that is "estimate at sigma_max, re-noise to refine_sigma, Heun down to 0", so the schedule
spans [sigma_min, refine_sigma] only and the student also keeps the teacher's estimate
(f(sigma_max n) matched to D(sigma_max n)): its procedure is estimate (1 evaluation), then one
consistency jump from refine_sigma in place of the Heun run (2). With refine_sigma >= sigma_max the
teacher samples from pure noise and the student is the plain 1-2 step consistency sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from training.config import DiffusionConfig
from training.models.diffusion import SIGMA_DATA, ResidualNet


def consistency_scalings(sigma: torch.Tensor, sigma_min: float, sigma_data: float = SIGMA_DATA):
    """c_skip = sd^2 / ((s - smin)^2 + sd^2), c_out = sd (s - smin) / sqrt(sd^2 + s^2), plus EDM's c_in, c_noise."""
    shifted = sigma - sigma_min
    c_skip = sigma_data**2 / (shifted**2 + sigma_data**2)
    c_out = sigma_data * shifted / (sigma_data**2 + sigma**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out, c_in, sigma.log() / 4


class ConsistencyStudent(nn.Module):
    def __init__(self, net: ResidualNet, sigma_min: float) -> None:
        super().__init__()
        self.net = net
        self.sigma_min = sigma_min

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = consistency_scalings(sigma, self.sigma_min)
        view = (-1, 1, 1)
        return c_skip.view(view) * x + c_out.view(view) * self.net(c_in.view(view) * x, c_noise, cond)


def teacher_schedule(num_scales: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """Ascending t_1 = sigma_min < ... < t_N = sigma_max (Karras spacing), as in the CM paper."""
    ramp = torch.linspace(0, 1, num_scales, dtype=torch.float64)
    inv_rho = 1.0 / rho
    return ((sigma_min**inv_rho + ramp * (sigma_max**inv_rho - sigma_min**inv_rho)) ** rho).float()


@torch.no_grad()
def teacher_heun_step(teacher: nn.Module, x: torch.Tensor, t_from: torch.Tensor, t_to: torch.Tensor,
                      cond: torch.Tensor) -> torch.Tensor:
    """One Heun step of the probability-flow ODE dx/dt = (x - D(x, t)) / t from t_from down to t_to (both [B])."""
    view = (-1, 1, 1)
    d = (x - teacher(x, t_from, cond)) / t_from.view(view)
    x_euler = x + (t_to - t_from).view(view) * d
    d_next = (x_euler - teacher(x_euler, t_to, cond)) / t_to.view(view)
    return x + (t_to - t_from).view(view) * 0.5 * (d + d_next)


def consistency_distillation_loss(student: nn.Module, target: nn.Module, teacher: nn.Module, x0: torch.Tensor,
                                  cond: torch.Tensor, schedule: torch.Tensor, index: torch.Tensor,
                                  noise: torch.Tensor, estimate_noise: torch.Tensor | None = None,
                                  sigma_max: float = 0.0) -> torch.Tensor:
    """MSE between the student at t_{n+1} and the EMA target at the teacher's estimate of x at t_n.

    With `estimate_noise`, plus the MSE of the student's estimate f(sigma_max n) against the teacher's
    D(sigma_max n) (both from pure noise, as the procedure starts); one student forward pass for both,
    so a DDP wrapper sees a single forward per step.
    """
    t_next = schedule[index + 1]
    t_now = schedule[index]
    x_next = x0 + t_next.view(-1, 1, 1) * noise
    x_now = teacher_heun_step(teacher, x_next, t_next, t_now, cond)
    with torch.no_grad():
        goal = target(x_now, t_now, cond)
    if estimate_noise is None:
        return ((student(x_next, t_next, cond) - goal) ** 2).mean()
    top = torch.full_like(t_next, sigma_max)
    x_top = estimate_noise * sigma_max
    with torch.no_grad():
        estimate = teacher(x_top, top, cond)
    out = student(torch.cat([x_next, x_top]), torch.cat([t_next, top]), torch.cat([cond, cond]))
    batch = x0.shape[0]
    return ((out[:batch] - goal) ** 2).mean() + ((out[batch:] - estimate) ** 2).mean()


@torch.no_grad()
def consistency_sample(student: nn.Module, cond: torch.Tensor, noises: list[torch.Tensor], sigma_max: float,
                       mid_sigma: float) -> torch.Tensor:
    """1 step: f(sigma_max * n0, sigma_max). 2 steps: re-noise to mid_sigma and apply f once more."""
    batch = cond.shape[0]
    full = torch.full((batch,), sigma_max, device=cond.device)
    x = student(noises[0] * sigma_max, full, cond)
    if len(noises) > 1:
        extra = (mid_sigma**2 - student.sigma_min**2) ** 0.5
        mid = torch.full((batch,), mid_sigma, device=cond.device)
        x = student(x + extra * noises[1], mid, cond)
    return x


def distill_schedule(diffusion: DiffusionConfig, num_scales: int) -> torch.Tensor:
    """The teacher's discretisation over the part of its sampler that is an ODE run."""
    top = min(diffusion.refine_sigma, diffusion.sigma_max)
    return teacher_schedule(num_scales, diffusion.sigma_min, top, diffusion.rho)


def refines(diffusion: DiffusionConfig) -> bool:
    """True when the teacher's procedure is estimate + refinement (not sampling from pure noise)."""
    return diffusion.refine_sigma < diffusion.sigma_max


@torch.no_grad()
def student_sample(student: nn.Module, cond: torch.Tensor, noises: list[torch.Tensor], steps: int,
                   diffusion: DiffusionConfig, mid_sigma: float) -> torch.Tensor:
    """The student's version of the teacher's procedure, `steps` (1 or 2) network evaluations.

    Refining teacher: 1 = the estimate alone; 2 = estimate, re-noise to refine_sigma exactly as the
    teacher does, one consistency jump to sigma = 0. Otherwise consistency_sample from sigma_max.
    """
    if not refines(diffusion):
        return consistency_sample(student, cond, noises[:steps], diffusion.sigma_max, mid_sigma)
    batch = cond.shape[0]
    top = torch.full((batch,), diffusion.sigma_max, device=cond.device)
    x = student(noises[0] * diffusion.sigma_max, top, cond)
    if steps > 1:
        level = torch.full((batch,), diffusion.refine_sigma, device=cond.device)
        x = student(x + diffusion.refine_sigma * noises[1], level, cond)
    return x


def student_refiner(student: nn.Module, residual_std: torch.Tensor, steps: int, diffusion: DiffusionConfig,
                    mid_sigma: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]:
    """(operator prediction, previous state, generator) -> residual in normalised latent units."""

    def refine(pred: torch.Tensor, prev: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noises = [torch.randn(pred.shape, generator=generator, device=pred.device) for _ in range(2)]
        cond = torch.cat([pred, prev], dim=1)
        return student_sample(student, cond, noises, steps, diffusion, mid_sigma) * residual_std

    return refine


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    for t_param, o_param in zip(target.parameters(), online.parameters(), strict=True):
        t_param.lerp_(o_param, 1 - decay)
