"""Checksum manifest (manifest.json) kept next to the shards and uploaded with them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py

from training.data.errors import ChecksumMismatchError, DataFileError
from training.data.layout import ATTR_GENERATOR, ATTR_NU, ATTR_SEED, MANIFEST_NAME, TENSOR_KEY

MANIFEST_FORMAT = "universal_simulator/burgers1d-manifest/1"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One shard as recorded in the manifest."""

    sha256: str
    size: int
    samples: int
    frames: int
    resolution: int
    nu: float | None
    seed: int | None = None  # generator seed, when the file records one
    generator: str = ""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: str | Path) -> ManifestEntry:
    """Manifest entry for an existing shard: checksum, size and its tensor shape."""
    path = Path(path)
    with h5py.File(path, "r") as handle:
        samples, frames, resolution = handle[TENSOR_KEY].shape
        attrs = handle.attrs
        nu = float(attrs[ATTR_NU]) if ATTR_NU in attrs else None
        seed = int(attrs[ATTR_SEED]) if ATTR_SEED in attrs else None
        generator = str(attrs.get(ATTR_GENERATOR, ""))
    return ManifestEntry(
        sha256=sha256_of(path), size=path.stat().st_size, samples=samples, frames=frames,
        resolution=resolution, nu=nu, seed=seed, generator=generator,
    )


def write_manifest(directory: str | Path, files: list[Path], extra: dict | None = None) -> Path:
    """Write (atomically) manifest.json in `directory` describing `files`, merged with any existing entries.

    Merging lets `--split train` and a later `--split test` run share one manifest; each entry carries
    its own seed/generator, while top-level `extra` keys describe the latest run.
    """
    directory = Path(directory)
    target = directory / MANIFEST_NAME
    entries: dict[str, dict] = {}
    if target.exists():
        entries = dict(read_manifest(directory)["files"])
    for path in files:
        entries[Path(path).name] = asdict(describe_file(path))
    document = {"format": MANIFEST_FORMAT, "files": dict(sorted(entries.items())), **(extra or {})}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp_name, target)
    return target


def read_manifest(directory: str | Path) -> dict:
    """Parsed manifest.json of `directory`; a DataFileError if missing or malformed."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DataFileError(f"{path}: manifest not found")
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFileError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise DataFileError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    if not isinstance(document.get("files"), dict):
        raise DataFileError(f"{path}: manifest has no 'files' mapping")
    return document


def verify_manifest(directory: str | Path) -> dict[str, ManifestEntry]:
    """Check every file listed in `directory`/manifest.json: present, same size, same sha256.

    Returns the entries by file name; raises ChecksumMismatchError naming the first bad file.
    """
    directory = Path(directory)
    document = read_manifest(directory)
    verified: dict[str, ManifestEntry] = {}
    for name, raw in document["files"].items():
        try:
            entry = ManifestEntry(**raw)
        except TypeError as exc:
            raise DataFileError(f"{directory / MANIFEST_NAME}: bad entry for {name}: {exc}") from exc
        path = directory / name
        if not path.is_file():
            raise ChecksumMismatchError(f"{path}: listed in {MANIFEST_NAME} but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise ChecksumMismatchError(f"{path}: size {size} bytes, manifest says {entry.size}")
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise ChecksumMismatchError(f"{path}: sha256 {digest} differs from manifest {entry.sha256}")
        verified[name] = entry
    return verified
