"""Bad input fails fast with a message naming the key or file: config, stage names, data, cache, checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pipeline_support import (
    REPO,
    TINY_CONFIG,
    clean_env,
    generate_tiny_data,
    run_cli,
    run_in_process,
    tiny_config_dict,
    write_config,
)

from training.config import STAGES, ConfigError, config_from_dict, load_config


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_tiny_data(tmp_path_factory.mktemp("errors") / "data")


@pytest.fixture(scope="module")
def trained_autoencoder(tmp_path_factory, data_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("ae")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        assert run_in_process(TINY_CONFIG, run_dir, data_dir, "autoencoder") == 0
    return run_dir


# -- config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.autoencoder.latent_dim > 0 and cfg.data.remote_prefix and cfg.data.train


@pytest.mark.parametrize(("patch", "message"), [
    ({"operator": {"lrr": 1.0}}, "operator.lrr: unknown key; allowed in operator:"),
    ({"operator": {"lr": "fast"}}, "operator.lr: expected float, got str ('fast')"),
    ({"data": {"train": "a.h5"}}, "data.train: expected a list, got str"),
    ({"runtime": {"bf16": 1}}, "runtime.bf16: expected bool, got int (1)"),
    ({"stages": ["autoencoder", "finetune"]}, "stages: unknown stage(s) ['finetune']; valid stages: "
                                              + ", ".join(STAGES)),
    ({"evaluation": {}}, "evaluation: unknown key"),
])
def test_config_errors_name_the_key(patch, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(patch)
    assert message in str(caught.value)


def test_exponent_floats_are_floats(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("operator:\n  lr: 1e-3\n  weight_decay: 5E-2\n")
    cfg = load_config(config)
    assert cfg.operator.lr == 1e-3 and cfg.operator.weight_decay == 0.05


def test_bad_config_fails_before_anything(tmp_path, data_dir, capsys):
    config = write_config(tmp_path / "bad.yaml", {**tiny_config_dict(), "operator": {"lr": "x"}})
    assert run_in_process(config, tmp_path / "run", data_dir) == 2
    out = capsys.readouterr().out
    assert f"PIPELINE FAILED stage=setup: ConfigError: {config}: operator.lr: expected float, got str" in out
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"


def test_unknown_stage_name_lists_valid_ones(tmp_path, data_dir):
    result = run_cli(["--config", str(TINY_CONFIG), "--stage", "operater", "--run-dir", str(tmp_path),
                      "--data-dir", str(data_dir)], clean_env())
    assert result.returncode == 2
    assert result.stdout.strip().splitlines()[-1] == (
        "PIPELINE FAILED stage=setup: ConfigError: unknown stage 'operater'; valid stages: "
        "autoencoder, cache, operator, diffusion, distill, evaluate (or all)")


# -- data ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep_manifest", [True, False], ids=["manifest", "no-manifest"])
def test_corrupt_data_file_is_named_before_training(tmp_path, data_dir, capsys, keep_manifest):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    if not keep_manifest:
        (data / "manifest.json").unlink()
    bad = data / "burgers1d_val_000.h5"
    bad.write_bytes(b"\x00not hdf5" * 100)
    assert run_in_process(TINY_CONFIG, tmp_path / "run", data) == 2
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("PIPELINE FAILED")]
    assert len(failed) == 1 and failed[0].startswith("PIPELINE FAILED stage=setup: ")
    assert str(bad) in failed[0]
    assert ("sha256" in failed[0] or "size" in failed[0]) if keep_manifest else "not a readable HDF5" in failed[0]
    assert not list((tmp_path / "run" / "checkpoints").rglob("*.pt"))


def test_missing_data_file_is_named(tmp_path, data_dir, capsys):
    raw = tiny_config_dict()
    raw["data"]["test"] = ["burgers1d_test_000.h5", "burgers1d_test_001.h5"]
    config = write_config(tmp_path / "c.yaml", raw)
    assert run_in_process(config, tmp_path / "run", data_dir) == 2
    assert f"data file(s) not found: {data_dir / 'burgers1d_test_001.h5'}" in capsys.readouterr().out


def test_shape_mismatch_is_named(tmp_path, data_dir, capsys):
    raw = tiny_config_dict()
    raw["evaluate"]["rollout_steps"] = 40  # the tiny files have 11 frames
    config = write_config(tmp_path / "c.yaml", raw)
    assert run_in_process(config, tmp_path / "run", data_dir) == 2
    out = capsys.readouterr().out
    assert "burgers1d_train_000.h5: 11 frames after t_stride, but evaluate.rollout_steps=40 needs 41" in out


# -- checkpoints and cache --------------------------------------------------------------------------------
def test_checkpoint_from_another_config_is_refused(tmp_path, trained_autoencoder, data_dir, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_autoencoder, run_dir)
    raw = tiny_config_dict()
    raw["autoencoder"]["lr"] = 0.01
    raw["autoencoder"]["width"] = 24
    config = write_config(tmp_path / "other.yaml", raw)
    assert run_in_process(config, run_dir, data_dir) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("PIPELINE FAILED")][0]
    assert line.startswith(f"PIPELINE FAILED stage=autoencoder: CheckpointError: "
                           f"{run_dir / 'checkpoints' / 'autoencoder' / 'final.pt'}: made with another config")
    assert "autoencoder.lr: 0.003 (checkpoint) vs 0.01 (current)" in line
    assert "autoencoder.width: 16 (checkpoint) vs 24 (current)" in line


def test_stale_cache_is_detected(tmp_path, trained_autoencoder, data_dir, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_autoencoder, run_dir)
    cache = run_dir / "cache" / "latents.pt"
    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "cache", reset_cache=False) == 0
    built = cache.stat().st_mtime_ns
    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "cache", reset_cache=False) == 0
    assert "is up to date (RESET_CACHE=0): kept" in capsys.readouterr().out
    assert cache.stat().st_mtime_ns == built

    key_path = run_dir / "cache" / "key.json"
    key = json.loads(key_path.read_text())
    key_path.write_text(json.dumps({**key, "encoder_uid": "0" * 32}))  # as if made by another encoder
    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "operator", reset_cache=False) == 1
    out = capsys.readouterr().out
    assert f"PIPELINE FAILED stage=operator: StaleCacheError: {cache}: latent cache is missing or stale " \
           "(encoder_uid differ)" in out

    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "cache", reset_cache=False) == 0
    assert "[cache] building the latent cache (encoder_uid changed)" in capsys.readouterr().out
    assert json.loads(key_path.read_text()) == key

    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "cache", reset_cache=True) == 0
    assert "[cache] building the latent cache (RESET_CACHE=1)" in capsys.readouterr().out


def test_failure_hook_reports_the_stage(tmp_path, trained_autoencoder, data_dir, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_autoencoder, run_dir)
    assert run_in_process(TINY_CONFIG, run_dir, data_dir, "all", fail_at="cache") == 1
    out = capsys.readouterr().out
    assert "[autoencoder] finished earlier (final checkpoint matches its inputs): skipped" in out
    assert out.strip().splitlines()[-1] == ("PIPELINE FAILED stage=cache: InjectedFailure: "
                                            "TRAIN_FAIL_AT_STAGE=cache: injected failure after encoding the train split")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["stage"] == "cache" and "InjectedFailure" in status["error"]
    assert (run_dir / "logs" / "cache.log").read_text().splitlines()[-1].startswith("PIPELINE FAILED stage=cache:")


def test_new_data_files_retrain_a_finished_stage(tmp_path, trained_autoencoder, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_autoencoder, run_dir)
    other_data = generate_tiny_data(tmp_path / "other", seed=1)
    raw = tiny_config_dict()
    raw["stages"] = ["autoencoder"]  # `all` = just this stage; `stages` does not change what weights mean
    config = write_config(tmp_path / "c.yaml", raw)
    assert run_in_process(config, run_dir, other_data) == 0
    out = capsys.readouterr().out
    assert "[autoencoder] final checkpoint is stale (data files changed since it was made): training again" in out
    assert json.loads((run_dir / "checkpoints" / "autoencoder" / "final.json").read_text())["upstream"]["data"] != \
        json.loads((trained_autoencoder / "checkpoints" / "autoencoder" / "final.json").read_text())["upstream"]["data"]
