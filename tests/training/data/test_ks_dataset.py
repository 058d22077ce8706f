"""`python -m training data --equation ks`: shards in our PDEBench layout, equation attributes, our reader."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from training.config import ConfigError, config_from_dict
from training.data import load_burgers, read_manifest, verify_manifest, write_burgers_file
from training.data.cli import main
from training.data.equations import read_equation
from training.data.generate import generate_dataset
from training.data.ks_dataset import KsSpec
from training.data.layout import ATTR_EQUATION, ATTR_NU

TINY_KS = ["--equation", "ks", "--resolution", "32", "--solver-resolution", "64", "--frames", "6",
           "--burn-in", "2", "--max-step", "0.1"]


def test_ks_shards_round_trip_through_the_reader_with_their_equation(tmp_path, capsys):
    assert main([*TINY_KS, "--samples", "10", "--seed", "4", "--out", str(tmp_path), "--batch-size", "3"]) == 0
    names = ["ks1d_test_000.h5", "ks1d_train_000.h5", "ks1d_val_000.h5"]
    assert sorted(verify_manifest(tmp_path)) == names
    assert "wrote 3 shard(s), 10 trajectories" in capsys.readouterr().out
    train = load_burgers(tmp_path / "ks1d_train_000.h5")
    assert train.u.shape == (8, 6, 32) and train.nu is None
    np.testing.assert_allclose(train.x, (np.arange(32) + 0.5) * 2.0)  # cell centres of [0, 64)
    np.testing.assert_allclose(train.t, np.arange(6) * 0.2)
    # exactly what the solver gives for these trajectories (float32), whatever the batching
    np.testing.assert_array_equal(train.u, _tiny_spec(seed=4).solve("train", list(range(8)), None))
    info = read_equation(tmp_path / "ks1d_train_000.h5")
    assert info.name == "ks" and info.params["domain_length"] == 64.0
    with h5py.File(tmp_path / "ks1d_train_000.h5") as handle:
        assert ATTR_NU not in handle.attrs  # no viscosity to misread
    manifest = read_manifest(tmp_path)
    assert manifest["generator"]["equation"] == "ks" and manifest["generator"]["burn_in"] == 2.0
    assert all(entry["nu"] is None for entry in manifest["files"].values())


def test_trajectories_keep_their_mean_and_the_default_burn_in_lands_on_the_attractor():
    spec = KsSpec(resolution=64, frames=201)  # PDE-Refiner's setup, a coarser stored grid
    u = spec.solve("test", list(range(4)), None)
    initial = spec.family.sample(spec.seed, 2, list(range(4)), spec.x, spec.length)
    np.testing.assert_allclose(u.mean(axis=-1), initial.mean(axis=-1, keepdims=True) * np.ones((1, 201)),
                               atol=1e-6)  # float32 storage
    rms_first, rms_last = u[:, :20].std(axis=-1).mean(), u[:, -20:].std(axis=-1).mean()
    assert 1.1 < rms_first < 1.6 and abs(rms_first - rms_last) < 0.2  # stationary: started on the attractor
    assert initial.std(axis=-1).mean() < 0.9  # ... which the sine sum itself is not


def test_rerun_keeps_identical_ks_shards(tmp_path, capsys):
    arguments = [*TINY_KS, "--samples", "2", "--split", "val", "--out", str(tmp_path)]
    assert main(arguments) == 0
    first = (tmp_path / "ks1d_val_000.h5").read_bytes()
    capsys.readouterr()
    assert main(arguments) == 0
    assert "kept: identical parameters" in capsys.readouterr().out
    assert (tmp_path / "ks1d_val_000.h5").read_bytes() == first
    assert main([*arguments[:-2], "--domain-length", "22", "--out", str(tmp_path)]) == 0
    assert "kept" not in capsys.readouterr().out
    assert read_equation(tmp_path / "ks1d_val_000.h5").params["domain_length"] == 22.0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--equation", "ks", "--nu", "0.01"], "--nu: Burgers option(s), not allowed with --equation ks"),
    (["--equation", "ks", "--max-displacement", "1e-3"], "--max-displacement: Burgers option(s)"),
    (["--nu", "0.01", "--burn-in", "3"], "--burn-in: KS option(s), only allowed with --equation ks"),
    ([], "--nu is required for --equation burgers"),
    (["--equation", "ks", "--burn-in", "0.3", "--frame-dt", "0.2"], "whole number of frame_dt"),
    (["--equation", "kdv"], "invalid choice: 'kdv'"),
])
def test_options_that_do_not_fit_the_equation_exit_2(tmp_path, capsys, arguments, message):
    assert main([*arguments, "--samples", "4", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_burgers_files_name_their_equation_and_old_or_pdebench_files_read_as_burgers(tmp_path):
    u, x = np.zeros((1, 3, 8), np.float32), (np.arange(8) + 0.5) / 8
    ours = write_burgers_file(tmp_path / "burgers1d_train_000.h5", u, x, 0.01, nu=0.001)
    assert read_equation(ours).name == "burgers" and read_equation(ours).params == {"nu": 0.001}
    with h5py.File(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5", "w") as handle:  # PDEBench: no attributes
        handle["tensor"] = u
    assert read_equation(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5").params == {"nu": 0.1}
    with h5py.File(ours, "a") as handle:  # a shard written before the equation attributes existed
        del handle.attrs[ATTR_EQUATION]
    assert read_equation(ours).name == "burgers"


def test_generate_dataset_accepts_a_ks_spec_directly(tmp_path):
    results = generate_dataset(_tiny_spec(), 1, tmp_path, split="test")
    assert [r.path.name for r in results] == ["ks1d_test_000.h5"]
    params = json.loads(h5py.File(results[0].path).attrs["generator_params_json"])
    assert params["generator"].startswith("universal_simulator.ks1d.etdrk4") and params["length"] == 64.0


@pytest.mark.parametrize(("data", "message"), [
    ({"equation": "kdv"}, "data.equation: expected one of burgers, ks, got 'kdv'"),
    ({"equation": "ks", "nu": 0.01}, "data.nu: the KS equation has no viscosity; set data.nu: null"),
    ({"equation": "burgers", "nu": None}, "data.nu: Burgers needs its viscosity"),
])
def test_config_data_equation_is_checked(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_from_dict({"data": data})
    assert config_from_dict({"data": {"equation": "ks", "nu": None}}).data.equation == "ks"
    assert config_from_dict({}).data.equation == "burgers"  # old configs: Burgers, as before


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="domain length must be > 0"):
        KsSpec(length=0.0)
    with pytest.raises(ValueError, match="must divide solver_resolution"):
        KsSpec(resolution=96, solver_resolution=256)
    assert KsSpec(resolution=96).solver_resolution == 288 and KsSpec(resolution=512).solver_resolution == 512
    assert KsSpec().substeps == 4 and KsSpec().skip_frames == 360


def _tiny_spec(seed: int = 0) -> KsSpec:
    return KsSpec(seed=seed, resolution=32, solver_resolution=64, frames=6, burn_in=2.0, max_step=0.1)
