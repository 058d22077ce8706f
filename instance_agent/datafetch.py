"""Fetch a config's data files from the bucket: only what is missing or invalid, many at once, checksummed.

Valid means: the size the bucket lists and the sha256 in the bucket's `manifest.json` (or, for a file the
manifest does not list, the MD5 the bucket reports). A stamp file remembers what was verified (by size and
mtime), so a relaunch on the same instance neither downloads nor re-hashes gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from instance_agent.rclone import Bucket
from training.config import load_config
from training.run.paths import atomic_write_json

MANIFEST_NAME = "manifest.json"
STAMP_NAME = ".verified.json"


class DataFetchError(RuntimeError):
    """A data file is missing from the bucket or does not match its checksum."""


@dataclass(frozen=True)
class DataSpec:
    """What a config needs: files under one bucket prefix, and which config key asked for each."""

    remote_prefix: str
    files: dict[str, str]  # file name -> config key, e.g. "burgers1d_train_000.h5" -> "data.train"

    @classmethod
    def from_config(cls, config_path: str | Path) -> DataSpec:
        data = load_config(config_path).data
        files: dict[str, str] = {}
        for split in ("train", "val", "test"):
            for name in getattr(data, split):
                files.setdefault(name, f"data.{split}")
        return cls(remote_prefix=data.remote_prefix.strip("/"), files=files)


@dataclass
class FetchReport:
    bucket: str
    prefix: str
    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    seconds: float = 0.0
    checked_with: str = "sha256"  # sha256 (manifest) or md5 (bucket hash, no manifest)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Expected:
    size: int
    sha256: str | None
    md5: str | None


def fetch_data(
    bucket: Bucket, spec: DataSpec, dest: Path, *, transfers: int = 8, multi_thread_streams: int = 8,
    multi_thread_cutoff: str = "64M", timeout: float = 3600,
) -> FetchReport:
    started = time.monotonic()
    report = FetchReport(bucket=bucket.name, prefix=spec.remote_prefix)
    dest.mkdir(parents=True, exist_ok=True)
    expected = _expected(bucket, spec, report)
    stamps = _read_stamps(dest)
    report.present = [name for name in spec.files if _is_valid(dest / name, expected[name], stamps)]
    report.fetched = [name for name in spec.files if name not in report.present]
    if report.fetched:
        _download(bucket, spec.remote_prefix, report.fetched, dest, transfers, multi_thread_streams,
                  multi_thread_cutoff, timeout)
        for name in report.fetched:
            _check_fetched(dest / name, expected[name], bucket.url(f"{spec.remote_prefix}/{name}"), stamps)
            report.bytes_fetched += expected[name].size
    atomic_write_json(dest / STAMP_NAME, stamps)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _expected(bucket: Bucket, spec: DataSpec, report: FetchReport) -> dict[str, Expected]:
    """Size and checksums per needed file, from the bucket's listing and manifest; missing objects fail here."""
    listing = bucket.list_files(spec.remote_prefix)
    missing = [name for name in spec.files if name not in listing]
    if missing:
        lines = [f"  {bucket.url(f'{spec.remote_prefix}/{n}')} (listed in {spec.files[n]})" for n in missing]
        found = ", ".join(sorted(listing)[:10]) or "nothing"
        raise DataFetchError(
            f"{len(missing)} data file(s) missing from bucket {bucket.name!r}:\n" + "\n".join(lines)
            + f"\nunder {bucket.url(spec.remote_prefix)} the bucket has: {found}\n"
            "upload them with: python -m training data --config <config> --upload")
    manifest = {}
    if MANIFEST_NAME in listing:
        text = bucket.read_text(f"{spec.remote_prefix}/{MANIFEST_NAME}")
        try:
            manifest = json.loads(text).get("files") or {}
        except (ValueError, AttributeError) as exc:
            raise DataFetchError(f"{bucket.url(f'{spec.remote_prefix}/{MANIFEST_NAME}')}: not a manifest: {exc}") from None
    if not all(name in manifest for name in spec.files):
        report.checked_with = "sha256+md5" if manifest else "md5"
    return {
        name: Expected(
            size=int(listing[name]["Size"]),
            sha256=(manifest.get(name) or {}).get("sha256"),
            md5=(listing[name].get("Hashes") or {}).get("md5"),
        )
        for name in spec.files
    }


def _is_valid(path: Path, expected: Expected, stamps: dict) -> bool:
    """Present with the bucket's size and checksum. The stamp of an earlier check stands in for re-hashing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    if stat.st_size != expected.size:
        return False
    stamp = stamps.get(path.name) or {}
    unchanged = stamp.get("size") == stat.st_size and stamp.get("mtime_ns") == stat.st_mtime_ns
    if expected.sha256 is None:
        # No manifest entry: trust only a file this code downloaded (rclone checked its md5) from the same object.
        return unchanged and stamp.get("md5") == expected.md5
    digest = stamp.get("sha256") if unchanged else sha256_of(path)
    if digest != expected.sha256:
        return False
    stamps[path.name] = _stamp(stat, digest, expected)
    return True


def _stamp(stat, digest: str, expected: Expected) -> dict:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest, "md5": expected.md5}


def _download(bucket: Bucket, prefix: str, names: list[str], dest: Path, transfers: int, streams: int,
              cutoff: str, timeout: float) -> None:
    with tempfile.NamedTemporaryFile("w", prefix=".fetch-", suffix=".txt", dir=dest) as listing:
        listing.write("".join(f"{name}\n" for name in names))
        listing.flush()
        bucket.run(
            ["copy", bucket.remote(prefix), str(dest), "--files-from-raw", listing.name,
             "--ignore-times",  # we decided these need fetching (e.g. same size, wrong bytes): no skip by mtime
             "--transfers", str(transfers), "--checkers", str(max(transfers, 8)),
             "--multi-thread-streams", str(streams), "--multi-thread-cutoff", cutoff,
             "--retries", "3", "--low-level-retries", "10", "--stats-log-level", "NOTICE"],
            f"downloading {len(names)} file(s) from {bucket.url(prefix)}", timeout=timeout)


def _check_fetched(path: Path, expected: Expected, url: str, stamps: dict) -> None:
    if not path.is_file():
        raise DataFetchError(f"{url}: rclone reported success but {path} is not there")
    stat = path.stat()
    if stat.st_size != expected.size:
        raise DataFetchError(f"{url}: downloaded {stat.st_size} bytes, the bucket lists {expected.size}")
    digest = sha256_of(path)
    if expected.sha256 and digest != expected.sha256:
        path.unlink()
        raise DataFetchError(
            f"{url}: sha256 {digest} differs from the bucket's manifest ({expected.sha256}); the object or the "
            "manifest is stale: re-upload with python -m training data --config <config> --upload")
    stamps[path.name] = _stamp(stat, digest, expected)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file. (training.data.manifest has one too, but importing it imports torch: seconds.)"""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_stamps(dest: Path) -> dict:
    try:
        value = json.loads((dest / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

