"""`python -m training data` end to end on a tiny grid: shards, manifest, resume, upload to S3."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import load_burgers, load_split, read_manifest, verify_manifest
from training.data.cli import main
from training.data.generate import GenerationSpec, default_solver_resolution, split_sizes
from training.store.bucket import ObjectStore

TINY = ["--resolution", "16", "--solver-resolution", "64", "--frames", "6", "--frame-dt", "0.05",
        "--max-displacement", "1e-3"]


def test_generates_all_splits_with_manifest_and_summaries(tmp_path, capsys):
    assert main(["--nu", "0.01", "--samples", "20", "--seed", "5", "--out", str(tmp_path), *TINY,
                 "--shard-size", "10", "--batch-size", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ["burgers1d_train_000.h5", "burgers1d_train_001.h5", "burgers1d_val_000.h5", "burgers1d_test_000.h5"]
    assert [line.split(":")[0] for line in lines[:4]] == names
    assert "wrote 4 shard(s), 20 trajectories" in lines[4]
    assert set(verify_manifest(tmp_path)) == set(names)
    manifest = read_manifest(tmp_path)
    assert manifest["generator"]["seed"] == 5
    assert {entry["seed"] for entry in manifest["files"].values()} == {5}
    train = load_split(tmp_path, "train")
    assert train.u.shape == (16, 6, 16) and train.nu == 0.01
    np.testing.assert_allclose(train.x, (np.arange(16) + 0.5) / 16)
    np.testing.assert_allclose(train.t, np.arange(6) * 0.05)
    assert np.all(np.isfinite(train.u)) and np.abs(train.u).max() > 0.05
    # splits draw different initial conditions
    assert not np.allclose(load_split(tmp_path, "val").u[0], train.u[0])


def test_rerun_keeps_identical_shards_and_regenerates_changed_ones(tmp_path, capsys):
    arguments = ["--nu", "0.01", "--samples", "3", "--split", "test", "--out", str(tmp_path), *TINY]
    assert main(arguments) == 0
    first = (tmp_path / "burgers1d_test_000.h5").read_bytes()
    capsys.readouterr()
    assert main(arguments) == 0
    assert "kept: identical parameters" in capsys.readouterr().out
    assert (tmp_path / "burgers1d_test_000.h5").read_bytes() == first
    assert main([*arguments, "--seed", "9"]) == 0
    assert "kept" not in capsys.readouterr().out
    verify_manifest(tmp_path)


def test_shard_contents_do_not_depend_on_workers(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    common = ["--nu", "0.05", "--samples", "4", "--split", "train", *TINY, "--batch-size", "2"]
    assert main([*common, "--out", str(serial)]) == 0
    assert main([*common, "--out", str(parallel), "--workers", "2"]) == 0
    np.testing.assert_array_equal(
        load_burgers(serial / "burgers1d_train_000.h5").u, load_burgers(parallel / "burgers1d_train_000.h5").u
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--nu", "0"], "--nu: must be > 0"),
        (["--nu", "0.01", "--resolution", "12", "--solver-resolution", "64"], "must divide solver_resolution"),
        (["--nu", "0.01", "--split", "bogus"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, arguments, message):
    assert main([*arguments, "--samples", "4", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_upload_without_credentials_fails_before_generating(tmp_path, capsys, monkeypatch):
    for name in ("B2_KEY_ID", "B2_APP_KEY", "B2_S3_ENDPOINT", "B2_S3_REGION", "B2_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--nu", "0.01", "--samples", "4", "--out", str(tmp_path / "d"), *TINY, "--upload"]) == 2
    assert "B2_KEY_ID" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_upload_sends_shards_and_manifest_to_the_bucket(tmp_path, capsys, monkeypatch, b2_env):
    for name, value in b2_env.items():
        monkeypatch.setenv(name, value)
    arguments = ["--nu", "0.01", "--samples", "10", "--out", str(tmp_path / "d"), *TINY, "--upload",
                 "--prefix", "datasets/tiny"]
    assert main(arguments) == 0
    assert "uploaded 4 file(s), 0 already present" in capsys.readouterr().out
    store = ObjectStore.from_env(b2_env)
    keys = [info.key for info in store.list("datasets/tiny/")]
    assert keys == [f"datasets/tiny/{name}" for name in (
        "burgers1d_test_000.h5", "burgers1d_train_000.h5", "burgers1d_val_000.h5", "manifest.json")]
    assert main(arguments) == 0
    assert "uploaded 0 file(s), 4 already present" in capsys.readouterr().out
    store.sync_down("datasets/tiny", tmp_path / "fetched")
    assert set(verify_manifest(tmp_path / "fetched")) == {k.split("/")[-1] for k in keys[:3]}


def test_split_sizes_and_spec_validation():
    assert split_sizes(100, "all") == {"train": 80, "val": 10, "test": 10}
    assert split_sizes(15, "all") == {"train": 13, "val": 1, "test": 1}
    assert split_sizes(7, "val") == {"val": 7}
    with pytest.raises(ValueError, match="at least 10"):
        split_sizes(5, "all")
    with pytest.raises(ValueError, match="frames >= 2"):
        GenerationSpec(nu=0.01, frames=1)


def test_default_solver_grid_follows_viscosity():
    assert default_solver_resolution(0.1, 256) == 2048
    assert default_solver_resolution(0.01, 256) == 2048
    assert default_solver_resolution(0.001, 256) == 4096
    assert default_solver_resolution(0.0005, 256) == 8192
    assert default_solver_resolution(0.01, 3000) == 3000  # stays a multiple of the stored grid
    assert GenerationSpec(nu=0.001).solver_resolution == 4096
