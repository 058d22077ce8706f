"""`python -m training evaluate`: a finished run's checkpoints, from the bucket or a run dir, on other files.

One small run is trained once (all stages, checkpoints mirrored to a moto S3 bucket); the evaluation-only
command must reproduce the evaluate stage's own numbers on the same test file, refuse a PDEBench-layout
file whose domain makes it another viscosity, and score an equivalent PDEBench-layout file as ours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
from pipeline_support import REPO, clean_env, generate_tiny_data
from trained_run import small_config, train_run

from training.data.reader import domain_of_grid
from training.evaluation.cli import DataMismatchError, Physics, check_match
from training.evaluation.cli import main as evaluate_main
from training.store.bucket import ObjectStore

RUN = "tiny-evaluate-only"
METRICS = ("one_step_nrmse", "rollout_nrmse", "last_frame_nrmse")
OURS = Physics(nu=0.01, dt=0.05, domain=(0.0, 1.0), resolution=32)


# -- the decision (pure) -----------------------------------------------------------------------------------
def test_pdebench_grid_spans_minus_one_to_one():
    dx = 2 / 1024
    assert domain_of_grid(-1 + dx / 2 + dx * np.arange(1024)) == (-1.0, 1.0)
    assert domain_of_grid((np.arange(32) + 0.5) / 32) == (0.0, 1.0)


def test_pdebench_viscosity_on_twice_the_domain_is_refused_with_the_equivalent():
    pdebench = Physics(nu=0.01, dt=0.1, domain=(-1.0, 1.0), resolution=32)
    with pytest.raises(DataMismatchError) as caught:
        check_match(Path("1D_Burgers_Sols_Nu0.01.hdf5"), pdebench, OURS, t_stride=1, x_stride=1)
    message = str(caught.value)
    assert "the file has nu=0.01 on x in (-1, 1), which on the model's domain (0, 1) is nu=0.005" in message
    assert "the model was trained at nu=0.01" in message and "A matching file on x in (-1, 1) has nu=0.02" in message
    assert "frame spacing" not in message  # dt 0.1 on length 2 is the model's 0.05


def test_equivalent_physics_is_accepted_and_mismatches_name_the_stride():
    check_match(Path("f.h5"), Physics(nu=0.02, dt=0.1, domain=(-1.0, 1.0), resolution=32), OURS,
                t_stride=1, x_stride=1)
    with pytest.raises(DataMismatchError) as caught:
        check_match(Path("f.h5"), Physics(nu=0.02, dt=0.05, domain=(-1.0, 1.0), resolution=64), OURS,
                    t_stride=1, x_stride=2)
    message = str(caught.value)
    assert "frame spacing: dt=0.05 after t_stride=1 on x in (-1, 1) is dt=0.025" in message
    assert "pass --t-stride 2" in message
    assert "resolution: 64 points after x_stride=2, the model was trained on 32; pass --x-stride 4" in message
    with pytest.raises(DataMismatchError, match="viscosity unknown"):
        check_match(Path("f.h5"), Physics(nu=None, dt=0.05, domain=(0.0, 1.0), resolution=32), OURS,
                    t_stride=1, x_stride=1)


def test_another_equation_is_refused_and_ks_is_not_rescaled():
    ks = Physics(nu=None, dt=0.05, domain=(0.0, 64.0), resolution=32, equation="ks")
    with pytest.raises(DataMismatchError, match="holds the 'ks' equation; the model was trained on 'burgers'"):
        check_match(Path("ks.h5"), ks, OURS, t_stride=1, x_stride=1)
    check_match(Path("ks.h5"), ks, ks, t_stride=1, x_stride=1)
    with pytest.raises(DataMismatchError, match="domain length 32, the model was trained on 64"):
        check_match(Path("ks.h5"), Physics(nu=None, dt=0.05, domain=(0.0, 32.0), resolution=32, equation="ks"), ks,
                    t_stride=1, x_stride=1)


def test_cli_without_a_trained_run_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training", "evaluate", "--run-dir", str(tmp_path), "--data",
                             str(tmp_path / "x.h5")], env=clean_env(), cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert f"RunNotFoundError: {tmp_path}/checkpoints/autoencoder/final.pt not found" in result.stderr


# -- on a trained run ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket_env(s3_server) -> dict[str, str]:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return s3_server.b2_env(bucket)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, bucket_env) -> Path:
    root = tmp_path_factory.mktemp("evaluate-only")
    data_dir = generate_tiny_data(root / "data")
    config = small_config(root / "small.yaml")
    assert train_run(config, root / "run", data_dir, run_name=RUN, env=bucket_env) == 0
    return root


def _methods(folder: Path) -> dict[str, dict]:
    return json.loads((folder / "metrics.json").read_text())["methods"]


def _pdebench_copy(path: Path, source: Path, *, dt: float) -> Path:
    """`source`'s trajectories in PDEBench's own layout: no attributes (nu only in the name), x on (-1, 1)."""
    with h5py.File(source) as handle:
        u = handle["tensor"][:]
    frames, points = u.shape[1], u.shape[2]
    dx = 2 / points
    with h5py.File(path, "w") as handle:
        handle["tensor"] = u
        handle["x-coordinate"] = (-1 + dx / 2 + dx * np.arange(points)).astype(np.float32)
        handle["t-coordinate"] = (dt * np.arange(frames + 1)).astype(np.float32)
    return path


def test_evaluate_only_from_the_bucket_reproduces_the_stage(finished, bucket_env, tmp_path, monkeypatch, capsys):
    for name, value in bucket_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)  # the bucket's checkpoints go to a temporary dir, the reports under --out
    stage = _methods(finished / "run" / "metrics")
    shutil.rmtree(finished / "run" / "checkpoints", ignore_errors=False)  # nothing local: the bucket only
    assert {o.key for o in ObjectStore.from_env(bucket_env).list(f"runs/{RUN}/checkpoints/operator/")} >= {
        f"runs/{RUN}/checkpoints/operator/final.pt"}
    try:
        code = evaluate_main(["--run", RUN, "--data", str(finished / "data" / "burgers1d_test_000.h5"),
                              "--out", str(tmp_path / "report"), "--device", "cpu"])
    finally:
        out = capsys.readouterr()
    assert code == 0, out.out[-3000:] + out.err[-3000:]
    again = _methods(tmp_path / "report")
    assert set(again) == set(stage) >= {"persistence", "fno", "operator", "operator+diffusion", "operator+student1"}
    for method in stage:
        for key in METRICS:
            assert again[method][key] == pytest.approx(stage[method][key], rel=1e-5), (method, key)
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["evaluated_run"] == RUN and report["trained_physics"]["domain"] == [0.0, 1.0]
    assert bucket_env["B2_APP_KEY"] not in out.out + out.err + (tmp_path / "report" / "metrics.json").read_text()
    assert not list(tmp_path.glob("evaluate-*"))  # the fetched checkpoints lived in a temporary dir


@pytest.fixture(scope="module")
def local_run(finished, bucket_env, tmp_path_factory) -> Path:
    """The run's checkpoints back on local disk (the previous test may have removed them)."""
    from training.evaluation.inference import fetch_run

    run_dir = tmp_path_factory.mktemp("local-run")
    fetch_run(RUN, run_dir, bucket_env)
    return run_dir


def test_pdebench_file_of_another_viscosity_is_refused(finished, local_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    ours = finished / "data" / "burgers1d_test_000.h5"
    pdebench = _pdebench_copy(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", ours, dt=0.1)
    code = evaluate_main(["--run-dir", str(local_run), "--data", str(pdebench), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "DataMismatchError" in err and "on the model's domain (0, 1) is nu=0.005" in err
    assert "has nu=0.02" in err and not (tmp_path / "r").exists()


def test_equivalent_pdebench_file_scores_as_ours(finished, local_run, tmp_path, capsys, monkeypatch):
    """nu=0.02 on (-1, 1) at dt 0.1 is our nu=0.01 on [0, 1) at dt 0.05: same field values, same errors."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    ours = finished / "data" / "burgers1d_test_000.h5"
    pdebench = _pdebench_copy(tmp_path / "1D_Burgers_Sols_Nu0.02.hdf5", ours, dt=0.1)
    assert evaluate_main(["--run-dir", str(local_run), "--data", str(ours), str(pdebench),
                          "--out", str(tmp_path / "reports")]) == 0, capsys.readouterr().err[-3000:]
    a, b = _methods(tmp_path / "reports" / ours.stem), _methods(tmp_path / "reports" / pdebench.stem)
    for method in a:
        for key in METRICS:
            assert b[method][key] == pytest.approx(a[method][key], rel=1e-5), (method, key)
    report = json.loads((tmp_path / "reports" / pdebench.stem / "metrics.json").read_text())
    assert report["file_physics"]["domain"] == [-1.0, 1.0]
    assert report["equivalent_on_trained_domain"]["nu"] == pytest.approx(0.01)
    assert report["equivalent_on_trained_domain"]["dt"] == pytest.approx(0.05)
