"""Consistency distillation (Song et al. 2023) of the residual diffusion model into a 1-2 step student.

The student f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in x, c_noise, cond) uses the
consistency-model boundary parametrisation, so f(x, sigma_min) = x exactly. Training pulls
f_theta(x_{t_{n+1}}, t_{n+1}) towards f_target(x_hat_{t_n}, t_n), where x_hat is one Heun step of the
frozen EDM teacher along the discretised Karras schedule, and f_target is an EMA of the student.
"""

from __future__ import annotations

import torch
from torch import nn

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
                                  noise: torch.Tensor) -> torch.Tensor:
    """MSE between the student at t_{n+1} and the EMA target at the teacher's estimate of x at t_n."""
    t_next = schedule[index + 1]
    t_now = schedule[index]
    x_next = x0 + t_next.view(-1, 1, 1) * noise
    x_now = teacher_heun_step(teacher, x_next, t_next, t_now, cond)
    with torch.no_grad():
        goal = target(x_now, t_now, cond)
    return ((student(x_next, t_next, cond) - goal) ** 2).mean()


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


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    for t_param, o_param in zip(target.parameters(), online.parameters(), strict=True):
        t_param.lerp_(o_param, 1 - decay)
