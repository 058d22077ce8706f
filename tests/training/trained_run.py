"""A small finished run for the tests that use a trained model (evaluate-only, inference, W&B records).

Imported by the test modules like pipeline_support; each module trains its own run once (module fixture),
with the tiny config's steps cut further so the whole pipeline takes seconds of CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import TINY_CONFIG, tiny_config_dict, write_config

from training.run.pipeline import PipelineOptions, run_pipeline

STEPS = {"autoencoder": 30, "operator": 20, "diffusion": 20, "distill": 10, "fno": 10}


def small_config(path: Path, stages: list[str] | None = None, **sections: dict) -> Path:
    """configs/tiny.yaml with fewer steps, no plots, a small bootstrap and ensemble; `sections` patch it."""
    raw = tiny_config_dict()
    for section, steps in STEPS.items():
        raw[section].update(steps=steps, ckpt_every=10, log_every=10, warmup_steps=2)
    raw["evaluate"].update(plots=False, bootstrap_resamples=100, ensemble_size=2)
    if stages is not None:
        raw["stages"] = stages
    for section, values in sections.items():
        raw[section].update(values)
    return write_config(path, raw)


def train_run(config: Path, run_dir: Path, data_dir: Path, *, run_name: str, env: dict[str, str] | None = None,
              stage: str = "all", seed: int | None = None) -> int:
    """The pipeline in this process with W&B disabled and `env` (e.g. B2_*) set for the run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        return run_pipeline(PipelineOptions(config_path=config, stage=stage, run_dir=run_dir, data_dir=data_dir,
                                            run_name=run_name, seed=seed))


__all__ = ["TINY_CONFIG", "small_config", "train_run"]
