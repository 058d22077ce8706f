"""torch Datasets over in-memory Burgers trajectories: lagged frame pairs and unrolled windows.

Items are float32 tensors that share memory with `BurgersData.u` (no copies), shaped [X] for frames
and [length, X] for windows; a DataLoader adds the batch axis in front.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from training.data.records import BurgersData


class FramePairs(Dataset):
    """(u[n, t], u[n, t + lag]) for every trajectory n and every start t with t + lag < T."""

    def __init__(self, data: BurgersData, lag: int = 1) -> None:
        if lag < 1 or lag >= data.n_frames:
            raise ValueError(f"lag must be in [1, {data.n_frames - 1}] for {data.n_frames} frames, got {lag}")
        self.u = torch.from_numpy(data.u)
        self.lag = lag
        self.starts_per_sample = data.n_frames - lag

    def __len__(self) -> int:
        return self.u.shape[0] * self.starts_per_sample

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample, start = divmod(_checked(index, len(self)), self.starts_per_sample)
        return self.u[sample, start], self.u[sample, start + self.lag]


class TrajectoryWindows(Dataset):
    """Windows u[n, s : s + length] of consecutive frames for unrolled training.

    Window starts are s = 0, step, 2*step, ... so every window lies inside the trajectory.
    """

    def __init__(self, data: BurgersData, length: int, step: int = 1) -> None:
        if length < 2 or length > data.n_frames:
            raise ValueError(f"window length must be in [2, {data.n_frames}], got {length}")
        if step < 1:
            raise ValueError(f"window step must be >= 1, got {step}")
        self.u = torch.from_numpy(data.u)
        self.length = length
        self.step = step
        self.starts_per_sample = (data.n_frames - length) // step + 1

    def __len__(self) -> int:
        return self.u.shape[0] * self.starts_per_sample

    def __getitem__(self, index: int) -> torch.Tensor:
        sample, slot = divmod(_checked(index, len(self)), self.starts_per_sample)
        start = slot * self.step
        return self.u[sample, start : start + self.length]


def _checked(index: int, size: int) -> int:
    if index < 0:
        index += size
    if not 0 <= index < size:
        raise IndexError(f"index {index} out of range for dataset of size {size}")
    return index
