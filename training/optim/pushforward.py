"""The pushforward loss shared by the latent operator and the FNO baseline (Brandstetter et al., 2022)."""

from __future__ import annotations

import torch


def pushforward_loss(net: torch.nn.Module, x: torch.Tensor, next_frame: torch.Tensor, far_frame: torch.Tensor,
                     unroll: int, *, far_weight: float = 1.0, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Mean squared one-step error, plus (`unroll` > 1) `far_weight` times the error at `unroll` steps ahead,
    where the first `unroll - 1` steps run without gradient so the net learns from its own drifted inputs.
    Errors are divided by `scale` first. Both terms come from one forward: DDP expects one per backward."""
    if unroll == 1:
        return (((net(x) - next_frame) / scale) ** 2).mean()
    with torch.no_grad():
        y = x
        for _ in range(unroll - 1):
            y = net(y)
    one, far = net(torch.cat([x, y])).chunk(2)
    return (((one - next_frame) / scale) ** 2).mean() + far_weight * (((far - far_frame) / scale) ** 2).mean()
