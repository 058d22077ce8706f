"""Checkpoint files: atomic writes, the resolved config inside, and a clear error when configs differ.

A checkpoint is a dict: models (state dicts), optimizer, scheduler, step, rng, config (the whole
resolved config), uid (identity of this training result, used to key caches and downstream stages),
upstream (uids of the checkpoints it was trained from), final (stage finished) and extra (stage data
such as normalisation statistics), data (the training data's identity and physics: `data_facts`) and
history (the trained segments: from/to step and seed). Everything is a tensor or plain Python, so
`torch.load` runs with `weights_only=True` even on a file fetched from the bucket.

What a resume may change: `steps` (train longer: a final checkpoint below the new total is continued)
and the seed of trained stages (it draws the batches from then on; each segment's seed is in `history`).
The data identity covers the train and val files only, so a model is never tied to its test files.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from training.config import Config, flatten
from training.data.reader import equation_of, periodic_domain
from training.run.paths import atomic_write_bytes
from training.stages.registry import sections_of
from training.store.datafiles import DataPlan

# A checkpoint is checked over the config sections that decide what its weights mean (registry.sections_of).
# Other keys (evaluation settings, W&B, runtime flags, how often to log or checkpoint) may change between a
# run and its resume. The seed is not among a trained stage's sections: a seed override resumes (recorded in
# `history`).
_FREE_KEYS = ("ckpt_every", "log_every", "max_eval_samples")
# Sampler settings: they change how a trained model is used, not the weights (evaluate does compare them).
_SAMPLING_KEYS = ("sample_steps", "refine_sigma", "mid_sigma", "student_steps")
# Free when resuming a stage's own checkpoint (train longer); a loaded upstream must match them.
_RESUME_KEYS = ("steps",)


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or was made with another, incompatible config."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically: a kill mid-save leaves the previous file intact."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, *, config: dict[str, Any], kind: str, map_location: Any = "cpu",
                    resuming: bool = False) -> dict[str, Any]:
    """Load `path` and check that the config sections that matter for `kind` equal the current config
    (`resuming`: the stage continues this checkpoint, so its own `steps` may differ)."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path}: not a training checkpoint (no config inside)")
    differences = config_differences(payload["config"], config, kind, resuming=resuming)
    if differences:
        shown = "; ".join(differences[:8]) + (f"; ... {len(differences) - 8} more" if len(differences) > 8 else "")
        raise CheckpointError(
            f"{path}: made with another config; differing keys: {shown}. "
            "Use the config it was made with, or a fresh --run-dir (or TRAIN_RUN_NAME) for this config."
        )
    return payload


def config_differences(saved: dict[str, Any], current: dict[str, Any], kind: str, *,
                       resuming: bool = False) -> list[str]:
    """Human-readable `key: saved -> current` lines over the sections relevant to `kind`."""
    sections = sections_of(kind)
    free = _FREE_KEYS if kind == "evaluate" else _FREE_KEYS + _SAMPLING_KEYS
    if resuming and kind != "evaluate":
        free = free + _RESUME_KEYS
    relevant_saved = _relevant(saved, sections, free)
    relevant_current = _relevant(current, sections, free)
    # A key added to the code after the checkpoint was written means what its default means.
    defaults = _relevant(Config().to_dict(), sections, free)
    lines = []
    for key in sorted(set(relevant_saved) | set(relevant_current)):
        old = relevant_saved.get(key, defaults.get(key, "<absent>"))
        new = relevant_current.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: {old!r} (checkpoint) vs {new!r} (current)")
    return lines


def _relevant(config: dict[str, Any], sections: tuple[str, ...], free: tuple[str, ...]) -> dict[str, Any]:
    picked = {name: config.get(name) for name in sections}
    flat = flatten(picked)
    return {key: value for key, value in flat.items() if key.rsplit(".", 1)[-1] not in free}


def training_fingerprint(plan: DataPlan) -> str:
    """One hash over the train and val files' checksums: what a trained model depends on (never the test
    files, so evaluating on other files, or adding test shards, leaves every checkpoint valid)."""
    listing = {split: [(p.name, plan.sha256[p.name]) for p in plan.files[split]] for split in ("train", "val")}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def same_training_data(stored: str | None, plan: DataPlan) -> bool:
    """A checkpoint's recorded data identity matches `plan` (checkpoints written before the train/val
    fingerprint recorded the fingerprint over every split: those still match their own files)."""
    return stored is not None and stored in (training_fingerprint(plan), plan.fingerprint)


def data_facts(plan: DataPlan) -> dict[str, Any]:
    """What a trained model assumes of its data: an evaluation on another file is refused unless these agree
    (after the domain rescaling documented in training.evaluation.cli)."""
    first = plan.files["train"][0]
    return {"fingerprint": training_fingerprint(plan), "equation": equation_of(first), "nu": plan.nu, "dt": plan.dt, "resolution": plan.resolution,
            "frames": plan.frames, "domain": list(periodic_domain(first)), "train_files": [p.name for p in
                                                                                         plan.files["train"]]}
