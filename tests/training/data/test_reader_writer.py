"""Reading our shards and PDEBench-layout files; every bad file gives an error naming it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from training.data import BurgersData, DataFileError, load_burgers, load_split, write_burgers_file


def _trajectories(n: int = 3, frames: int = 11, resolution: int = 16) -> np.ndarray:
    return np.arange(n * frames * resolution, dtype=np.float32).reshape(n, frames, resolution)


def _cell_centres(resolution: int) -> np.ndarray:
    return (np.arange(resolution) + 0.5) / resolution


def _pdebench_file(path: Path, u: np.ndarray, t_entries: int | None = None) -> Path:
    """A file shaped like PDEBench's 1D_Burgers_Sols_Nu*.hdf5: float32 everywhere, T+1 times, no attributes."""
    frames, resolution = u.shape[1:]
    with h5py.File(path, "w") as handle:
        handle["tensor"] = u.astype(np.float32)
        handle["x-coordinate"] = _cell_centres(resolution).astype(np.float32)
        handle["t-coordinate"] = (np.arange(t_entries or frames + 1) * 0.01).astype(np.float32)
    return path


def test_roundtrip_of_our_writer_with_attributes(tmp_path):
    u = _trajectories()
    path = write_burgers_file(
        tmp_path / "burgers1d_train_000.h5", u, _cell_centres(16), 0.01, nu=0.001, seed=7, params={"a": 1}
    )
    data = load_burgers(path)
    assert isinstance(data, BurgersData)
    np.testing.assert_array_equal(data.u, u)
    assert data.u.dtype == np.float32 and data.nu == 0.001 and data.source_path == path
    np.testing.assert_allclose(data.t, np.arange(11) * 0.01)
    assert data.dt == pytest.approx(0.01) and data.dx == pytest.approx(1 / 16)
    with h5py.File(path) as handle:
        assert handle["t-coordinate"].shape == (12,)  # PDEBench's T+1 convention
        assert handle.attrs["seed"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["burgers1d_train_000.h5"]  # no temp files


def test_reads_pdebench_layout_with_strides_and_sample_selection(tmp_path):
    u = _trajectories(n=4, frames=21, resolution=32)
    path = _pdebench_file(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", u)
    data = load_burgers(path, t_stride=5, x_stride=4, samples=slice(1, 3))
    np.testing.assert_array_equal(data.u, u[1:3, ::5, ::4])
    np.testing.assert_allclose(data.x, _cell_centres(32)[::4], rtol=1e-6)
    np.testing.assert_allclose(data.t, [0.0, 0.05, 0.1, 0.15, 0.2], rtol=1e-6)
    assert data.dt == 0.05  # float32 time stamps, yet an exact step
    assert data.nu == 0.01  # from the file name, as PDEBench has no attributes
    assert load_burgers(path, max_frames=10, t_stride=3).n_frames == 4


def test_time_axis_with_exactly_t_entries_is_accepted(tmp_path):
    path = _pdebench_file(tmp_path / "plain.h5", _trajectories(frames=5), t_entries=5)
    data = load_burgers(path)
    assert data.n_frames == 5 and data.nu is None


def test_split_concatenates_shards_in_order(tmp_path):
    a, b = _trajectories(n=2), _trajectories(n=3) + 1000
    for index, block in enumerate((a, b)):
        write_burgers_file(tmp_path / f"burgers1d_val_{index:03d}.h5", block, _cell_centres(16), 0.01, nu=0.01)
    data = load_split(tmp_path, "val", x_stride=2)
    np.testing.assert_array_equal(data.u, np.concatenate([a, b])[:, :, ::2])
    assert data.source_path == tmp_path
    with pytest.raises(DataFileError, match="no test shards"):
        load_split(tmp_path, "test")


def test_split_with_mismatched_shards_is_an_error(tmp_path):
    write_burgers_file(tmp_path / "burgers1d_train_000.h5", _trajectories(), _cell_centres(16), 0.01, nu=0.01)
    write_burgers_file(tmp_path / "burgers1d_train_001.h5", _trajectories(), _cell_centres(16), 0.01, nu=0.1)
    with pytest.raises(DataFileError, match="burgers1d_train_001.h5"):
        load_split(tmp_path, "train")


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match=r"absent\.h5: data file not found"):
        load_burgers(tmp_path / "absent.h5")


def test_not_hdf5_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(DataFileError, match=r"garbage\.h5: not a readable HDF5"):
        load_burgers(garbage)
    good = write_burgers_file(tmp_path / "cut.h5", _trajectories(n=20, frames=50, resolution=64),
                              _cell_centres(64), 0.01, nu=0.01)
    content = good.read_bytes()
    good.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataFileError, match=r"cut\.h5"):
        load_burgers(good)


def test_missing_keys_are_listed(tmp_path):
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as handle:
        handle["tensor"] = _trajectories()
    with pytest.raises(DataFileError, match=r"partial\.h5: missing dataset\(s\) \['x-coordinate', 't-coordinate'\]"):
        load_burgers(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x_stride": 3}, "not divisible by x_stride 3"),
        ({"t_stride": 11}, "only 1 frame"),
        ({"max_frames": 1}, "only 1 frame"),
        ({"t_stride": 0}, "t_stride must be a positive integer"),
        ({"samples": slice(5, 9)}, "empty or not contiguous"),
    ],
)
def test_bad_subsampling_names_the_file(tmp_path, kwargs, message):
    path = _pdebench_file(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", _trajectories())
    with pytest.raises(DataFileError, match=message) as info:
        load_burgers(path, **kwargs)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"tensor": (2, 5, 8, 1)}, "expected \\[samples, frames, x\\]"),
        ({"x-coordinate": (7,)}, "'x-coordinate' has shape"),
        ({"t-coordinate": (3,)}, "'t-coordinate' has shape"),
    ],
)
def test_shape_mismatches(tmp_path, shapes, message):
    path = tmp_path / "bad.h5"
    default = {"tensor": (2, 5, 8), "x-coordinate": (8,), "t-coordinate": (6,)}
    with h5py.File(path, "w") as handle:
        for key, shape in {**default, **shapes}.items():
            handle[key] = np.zeros(shape, dtype=np.float32)
    with pytest.raises(DataFileError, match=message):
        load_burgers(path)


def test_non_finite_values_are_rejected(tmp_path):
    u = _trajectories()
    u[1, 2, 3] = np.nan
    path = _pdebench_file(tmp_path / "nan.h5", u)
    with pytest.raises(DataFileError, match="NaN"):
        load_burgers(path)


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError):
        write_burgers_file(tmp_path / "x.h5", np.array([[["a"]]]), np.zeros(1), 0.01, nu=0.01)
    assert list(tmp_path.iterdir()) == []
