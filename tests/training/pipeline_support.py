"""Helpers for the pipeline tests: tiny data from the real generator, configs, and ways to run the pipeline.

Imported by the test modules (conftest.py belongs to the data/storage tests); pytest's default
`prepend` import mode puts this folder on sys.path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from training.data.generate import GenerationSpec, generate_dataset
from training.run.pipeline import PipelineOptions, run_pipeline

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "tiny.yaml"
SUBPROCESS_TIMEOUT_S = 180


def generate_tiny_data(out_dir: Path, samples: int = 40, seed: int = 0) -> Path:
    """40 trajectories, 32 points, 11 frames 0.05 apart at nu=0.01, split 32/4/4, plus manifest.json (~2 s)."""
    spec = GenerationSpec(nu=0.01, seed=seed, resolution=32, solver_resolution=128, frames=11, frame_dt=0.05)
    generate_dataset(spec, samples, out_dir)
    return out_dir


def tiny_config_dict() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's env without W&B / B2 / TRAIN_* settings, W&B disabled, one thread."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WANDB_", "B2_", "TRAIN_", "AWS_")) and k != "RESET_CACHE"}
    env.update({"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], *, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """`python -m training run ARGS` (or LAUNCHER ... -m training run ARGS) in a fresh process."""
    command = (launcher or [sys.executable]) + ["-m", "training", "run", *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


def run_in_process(config: Path, run_dir: Path, data_dir: Path, stage: str = "all", *, reset_cache: bool = True,
                   fail_at: str | None = None, run_name: str | None = None) -> int:
    """The pipeline in this process (saves ~4 s of imports per run); W&B must be disabled by the caller."""
    options = PipelineOptions(config_path=config, stage=stage, run_dir=run_dir, data_dir=data_dir,
                              run_name=run_name, reset_cache=reset_cache, fail_at=fail_at)
    return run_pipeline(options)


def final_weights(run_dir: Path, stage: str, name: str = "final.pt") -> dict[str, torch.Tensor]:
    payload = torch.load(run_dir / "checkpoints" / stage / name, weights_only=True)
    return payload["models"]["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=atol, rtol=1e-5), f"{key} differs"
