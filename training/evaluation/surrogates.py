"""Predictors compared by the evaluation, all with one interface: physical field in, physical field out.

`LatentSurrogate` encodes, steps in normalised latent space with the operator, optionally refines each
step's residual with a sampler (EDM Heun or the consistency student), and decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from training.config import DiffusionConfig
from training.models.autoencoder import Autoencoder
from training.models.consistency import consistency_sample
from training.models.diffusion import refine_sample
from training.models.operator import LatentStepper

# (operator prediction, previous state, noise generator) -> residual in normalised latent units
Refiner = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


class Surrogate:
    name: str = ""
    evaluations_per_step: int = 0  # network evaluations per time step (decoder/encoder excluded)

    def one_step(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def rollout(self, u0: torch.Tensor, steps: int) -> torch.Tensor:
        """[B, X] -> [B, steps + 1, X], frame 0 being u0."""
        frames, u = [u0], u0
        for _ in range(steps):
            u = self.one_step(u)
            frames.append(u)
        return torch.stack(frames, dim=1)


class Persistence(Surrogate):
    name = "persistence"

    def one_step(self, u: torch.Tensor) -> torch.Tensor:
        return u


@dataclass
class PhysicalStepper(Surrogate):
    model: nn.Module
    name: str = "fno"
    evaluations_per_step: int = 1

    @torch.no_grad()
    def one_step(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(u).float()


class LatentSurrogate(Surrogate):
    def __init__(self, name: str, autoencoder: Autoencoder, operator: LatentStepper, *,
                 refiner: Refiner | None = None, refiner_evaluations: int = 0, seed: int = 0) -> None:
        self.name = name
        self.autoencoder = autoencoder
        self.operator = operator
        self.refiner = refiner
        self.evaluations_per_step = 1 + refiner_evaluations
        self.seed = seed
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def reset_noise(self) -> None:
        self._generator = None

    @torch.no_grad()
    def latent_step(self, x: torch.Tensor) -> torch.Tensor:
        pred = self.operator(x)
        if self.refiner is None:
            return pred
        return pred + self.refiner(pred, x, self.generator(x.device))

    @torch.no_grad()
    def encode(self, u: torch.Tensor) -> torch.Tensor:
        return self.operator.normalise(self.autoencoder.encode(u))

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(self.operator.denormalise(x)).float()

    def one_step(self, u: torch.Tensor) -> torch.Tensor:
        return self.decode(self.latent_step(self.encode(u)))

    @torch.no_grad()
    def rollout(self, u0: torch.Tensor, steps: int) -> torch.Tensor:
        """Stays in latent space for the whole rollout; decodes every frame for the metrics."""
        x, frames = self.encode(u0), [u0]
        for _ in range(steps):
            x = self.latent_step(x)
            frames.append(self.decode(x))
        return torch.stack(frames, dim=1)


def heun_refiner(denoiser: nn.Module, cfg: DiffusionConfig) -> Refiner:
    def refine(pred: torch.Tensor, prev: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noises = tuple(torch.randn(pred.shape, generator=generator, device=pred.device) for _ in range(2))
        cond = torch.cat([pred, prev], dim=1)
        return refine_sample(denoiser, cond, noises, cfg) * denoiser.residual_std

    return refine


def student_refiner(student: nn.Module, residual_std: torch.Tensor, student_steps: int, sigma_max: float,
                    mid_sigma: float) -> Refiner:
    def refine(pred: torch.Tensor, prev: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noises = [torch.randn(pred.shape, generator=generator, device=pred.device) for _ in range(student_steps)]
        cond = torch.cat([pred, prev], dim=1)
        return consistency_sample(student, cond, noises, sigma_max, mid_sigma) * residual_std

    return refine
