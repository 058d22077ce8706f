"""The distilled student runs the teacher's procedure ("estimate, re-noise to refine_sigma, Heun") in <= 2
network evaluations, counted with a wrapper around the real network."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from training.config import DiffusionConfig
from training.evaluation.surrogates import heun_refiner
from training.models.consistency import ConsistencyStudent, distill_schedule, student_refiner
from training.models.diffusion import ResidualDenoiser, refine_evaluations

LATENT = 4


class CountingNet(nn.Module):
    """The real ResidualNet, counting its calls and recording each call's noise level."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.levels: list[float] = []

    def forward(self, x, c_noise, cond):
        self.levels.append(round(float(torch.exp(4 * c_noise[0])), 5))
        return self.net(x, c_noise, cond)


def teacher_and_student(cfg: DiffusionConfig) -> tuple[ResidualDenoiser, ConsistencyStudent]:
    torch.manual_seed(0)
    teacher = ResidualDenoiser(LATENT, cfg)
    for param in teacher.parameters():  # a network that is not the zero map (its projection starts at zero)
        param.data.normal_(0, 0.3)
    student = ConsistencyStudent(copy.deepcopy(teacher.net), cfg.sigma_min)  # the distill stage's start
    teacher.net, student.net = CountingNet(teacher.net), CountingNet(student.net)
    return teacher, student


def run(refine, batch: int = 5) -> torch.Tensor:
    pred, prev = torch.randn(batch, LATENT, 8), torch.randn(batch, LATENT, 8)
    return refine(pred, prev, torch.Generator().manual_seed(11))


CFG = DiffusionConfig(width=16, blocks=1, kernel_size=3, sample_steps=4, refine_sigma=0.2)


@pytest.mark.parametrize("steps", [1, 2])
def test_student_uses_at_most_two_evaluations_at_the_teachers_levels(steps):
    teacher, student = teacher_and_student(CFG)
    run(student_refiner(student, torch.ones(()), steps, CFG, mid_sigma=0.2))
    assert len(student.net.levels) == steps <= 2
    # The first evaluation is the teacher's estimate level, the second its refinement start.
    assert student.net.levels == [CFG.sigma_max, CFG.refine_sigma][:steps]
    run(heun_refiner(teacher, CFG))
    assert len(teacher.net.levels) == refine_evaluations(CFG) == 1 + 2 * CFG.sample_steps - 1
    assert teacher.net.levels[0] == CFG.sigma_max and teacher.net.levels[1] == pytest.approx(CFG.refine_sigma)


def test_one_evaluation_student_is_the_teachers_estimate_at_initialisation():
    """Same noise, same weights: the student's first evaluation reproduces the teacher's estimate
    D(sigma_max n0) (the parametrisations differ by sigma_min at sigma_max); the second one refines it."""
    teacher, student = teacher_and_student(CFG)
    torch.manual_seed(1)
    pred, prev = torch.randn(5, LATENT, 8), torch.randn(5, LATENT, 8)
    n0 = torch.randn(pred.shape, generator=torch.Generator().manual_seed(11))  # the refiners' first draw
    top = torch.full((5,), CFG.sigma_max)
    with torch.no_grad():
        estimate = teacher(n0 * CFG.sigma_max, top, torch.cat([pred, prev], dim=1))
    one = student_refiner(student, torch.ones(()), 1, CFG, 0.2)(pred, prev, torch.Generator().manual_seed(11))
    two = student_refiner(student, torch.ones(()), 2, CFG, 0.2)(pred, prev, torch.Generator().manual_seed(11))
    scale = estimate.abs().mean()
    assert scale > 0.01
    assert (one - estimate).abs().mean() < 0.01 * scale
    assert (two - one).abs().mean() > 0.01 * scale  # the second evaluation does change the sample


def test_distillation_schedule_spans_only_the_refinement_run():
    schedule = distill_schedule(CFG, 18)
    assert schedule[0] == pytest.approx(CFG.sigma_min) and schedule[-1] == pytest.approx(CFG.refine_sigma)
    full = dataclasses.replace(CFG, refine_sigma=CFG.sigma_max)  # a teacher sampling from pure noise
    assert distill_schedule(full, 18)[-1] == pytest.approx(CFG.sigma_max)


def test_pure_noise_teacher_keeps_the_plain_consistency_sampler():
    full = dataclasses.replace(CFG, refine_sigma=CFG.sigma_max)
    _, student = teacher_and_student(full)
    run(student_refiner(student, torch.ones(()), 2, full, mid_sigma=0.3))
    assert student.net.levels == [full.sigma_max, 0.3]
