"""The latent cache: every split encoded once, on disk, keyed by what it was made from.

The key holds the data files' checksums, the subsampling settings and the encoder checkpoint's uid,
so a cache made from other data or another encoder is detected (and rebuilt by the cache stage, or
refused by the stages that read it).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from training.config import Config
from training.run.paths import atomic_write_bytes, atomic_write_json
from training.store.datafiles import DataPlan

CACHE_FILE = "latents.pt"
KEY_FILE = "key.json"


class StaleCacheError(RuntimeError):
    """The latent cache on disk was built from other data or another encoder."""


def cache_key(cfg: Config, plan: DataPlan, encoder_uid: str) -> dict:
    data = cfg.data
    return {
        "data_fingerprint": plan.fingerprint,
        "encoder_uid": encoder_uid,
        "t_stride": data.t_stride,
        "x_stride": data.x_stride,
        "max_frames": data.max_frames,
        "max_train_samples": data.max_train_samples,
        "max_eval_samples": data.max_eval_samples,
    }


@dataclass
class LatentCache:
    latents: dict[str, torch.Tensor]  # split -> [N, T, C, L] float32
    key: dict


def read_key(folder: Path) -> dict | None:
    path = folder / KEY_FILE
    if not (path.is_file() and (folder / CACHE_FILE).is_file()):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def key_differences(stored: dict | None, wanted: dict) -> list[str]:
    if stored is None:
        return ["no cache"]
    return [name for name in sorted(set(stored) | set(wanted)) if stored.get(name) != wanted.get(name)]


def write_cache(folder: Path, cache: LatentCache) -> None:
    """Tensors first, key last: a kill between the two leaves a cache whose key does not match."""
    (folder / KEY_FILE).unlink(missing_ok=True)
    buffer = io.BytesIO()
    torch.save({"latents": cache.latents, "key": cache.key}, buffer)
    atomic_write_bytes(folder / CACHE_FILE, buffer.getvalue())
    atomic_write_json(folder / KEY_FILE, cache.key)


def load_cache(folder: Path, wanted: dict) -> LatentCache:
    """The cache if its key matches `wanted`; StaleCacheError naming what differs otherwise."""
    differing = key_differences(read_key(folder), wanted)
    if differing:
        raise StaleCacheError(
            f"{folder / CACHE_FILE}: latent cache is missing or stale ({', '.join(differing)} differ); "
            "rebuild it with the cache stage (RESET_CACHE=1 or --stage cache)"
        )
    payload = torch.load(folder / CACHE_FILE, map_location="cpu", weights_only=True)
    if payload.get("key") != wanted:
        raise StaleCacheError(f"{folder / CACHE_FILE}: tensors do not match {KEY_FILE}; rebuild the cache")
    return LatentCache(latents=payload["latents"], key=payload["key"])
