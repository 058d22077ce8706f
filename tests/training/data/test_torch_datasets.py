"""FramePairs and TrajectoryWindows index every (trajectory, start) exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.data import BurgersData, FramePairs, TrajectoryWindows


def _data(n=2, frames=6, resolution=4) -> BurgersData:
    u = np.arange(n * frames * resolution, dtype=np.float32).reshape(n, frames, resolution)
    return BurgersData(u=u, x=np.arange(resolution) / resolution, t=np.arange(frames) * 0.1, nu=0.01,
                       source_path=Path("mem"))


def test_frame_pairs_cover_all_lagged_pairs():
    data = _data()
    pairs = FramePairs(data, lag=2)
    assert len(pairs) == 2 * 4
    seen = set()
    for i in range(len(pairs)):
        current, future = pairs[i]
        first_value = int(current[0].item())  # u holds its own flat index: n * 24 + t * 4 + x
        n, t = first_value // 24, (first_value % 24) // 4
        assert torch.equal(future, torch.from_numpy(data.u[n, t + 2]))
        seen.add((n, t))
    assert seen == {(n, t) for n in range(2) for t in range(4)}
    assert torch.equal(pairs[-1][0], pairs[len(pairs) - 1][0])
    with pytest.raises(IndexError):
        pairs[len(pairs)]


def test_windows_and_dataloader_batches():
    data = _data(frames=7)
    windows = TrajectoryWindows(data, length=3, step=2)
    assert len(windows) == 2 * 3  # starts 0, 2, 4
    np.testing.assert_array_equal(windows[4].numpy(), data.u[1, 2:5])
    batch = next(iter(DataLoader(windows, batch_size=4)))
    assert batch.shape == (4, 3, 4) and batch.dtype == torch.float32
    current, future = next(iter(DataLoader(FramePairs(data), batch_size=5, shuffle=True)))
    assert current.shape == future.shape == (5, 4)


@pytest.mark.parametrize(("factory", "message"), [
    (lambda d: FramePairs(d, lag=6), "lag"),
    (lambda d: TrajectoryWindows(d, length=7), "window length"),
    (lambda d: TrajectoryWindows(d, length=2, step=0), "step"),
])
def test_bad_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory(_data())
