"""manifest.json: written next to shards, merged across runs, verified against the files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.data import (
    ChecksumMismatchError,
    DataFileError,
    read_manifest,
    verify_manifest,
    write_burgers_file,
    write_manifest,
)
from training.data.manifest import sha256_of


def _shard(directory, name, n=2):
    u = np.random.default_rng(0).standard_normal((n, 4, 8)).astype(np.float32)
    return write_burgers_file(directory / name, u, (np.arange(8) + 0.5) / 8, 0.01, nu=0.01)


def test_manifest_records_checksums_shapes_and_merges(tmp_path):
    first = _shard(tmp_path, "burgers1d_train_000.h5", n=3)
    write_manifest(tmp_path, [first], extra={"generator": {"seed": 1}})
    second = _shard(tmp_path, "burgers1d_test_000.h5")
    write_manifest(tmp_path, [second])
    document = read_manifest(tmp_path)
    assert sorted(document["files"]) == ["burgers1d_test_000.h5", "burgers1d_train_000.h5"]
    entry = document["files"]["burgers1d_train_000.h5"]
    assert entry == {
        "sha256": sha256_of(first), "size": first.stat().st_size, "samples": 3, "frames": 4,
        "resolution": 8, "nu": 0.01, "seed": None, "generator": "",
    }
    verified = verify_manifest(tmp_path)
    assert set(verified) == set(document["files"]) and verified["burgers1d_train_000.h5"].samples == 3


def test_corrupted_byte_is_a_checksum_mismatch_naming_the_file(tmp_path):
    path = _shard(tmp_path, "burgers1d_train_000.h5")
    write_manifest(tmp_path, [path])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"burgers1d_train_000\.h5: sha256"):
        verify_manifest(tmp_path)


def test_size_change_and_missing_file(tmp_path):
    path = _shard(tmp_path, "burgers1d_train_000.h5")
    write_manifest(tmp_path, [path])
    with open(path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ChecksumMismatchError, match="size"):
        verify_manifest(tmp_path)
    path.unlink()
    with pytest.raises(ChecksumMismatchError, match="missing"):
        verify_manifest(tmp_path)


def test_missing_or_foreign_manifest(tmp_path):
    with pytest.raises(DataFileError, match="manifest not found"):
        verify_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(DataFileError, match="not a"):
        verify_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataFileError, match="unreadable"):
        read_manifest(tmp_path)
