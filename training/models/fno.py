"""Physical-space FNO baseline, from the `neuraloperator` library (neuralop 2.0).

neuraloperator 2.0.0 declares no torch requirement of its own, so it installs beside torch==2.13.0
without touching it (checked with `uv pip install --dry-run`); it is imported lazily because it
pulls in tensorly and scipy (~3 s).
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import FNOConfig


class FNOStepper(nn.Module):
    """u_{t+1} = u_t + FNO(u_t), in units normalised by the training data's mean and std."""

    def __init__(self, cfg: FNOConfig) -> None:
        super().__init__()
        from neuralop.models import FNO

        self.fno = FNO(n_modes=(cfg.modes,), hidden_channels=cfg.width, in_channels=1, out_channels=1,
                       n_layers=cfg.layers)
        self.register_buffer("u_mean", torch.zeros(()))
        self.register_buffer("u_std", torch.ones(()))

    def set_stats(self, mean: float, std: float) -> None:
        self.u_mean.fill_(mean)
        self.u_std.fill_(max(std, 1e-6))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """One step in physical units: u [B, X] -> [B, X]."""
        x = ((u - self.u_mean) / self.u_std).unsqueeze(1)
        return u + self.fno(x).squeeze(1) * self.u_std
