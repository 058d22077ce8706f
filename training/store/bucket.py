"""Object storage on Backblaze B2's S3 API, configured only from the B2_* environment variables.

Every object we upload carries its sha256 in user metadata, so `sync_up`/`sync_down` skip files that
are already identical on the other side and downloads are verified before they replace a local file.
Credentials never appear in messages: errors name the operation, bucket and key, and any text that
would contain a credential is redacted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from run_contract import B2_ENV, BucketSettingsError, bucket_settings
from training.data.manifest import sha256_of

ENV_VARS = B2_ENV
SHA256_METADATA = "sha256"  # sent as x-amz-meta-sha256


class StorageConfigError(RuntimeError):
    """The B2_* environment is incomplete or malformed."""


class StorageError(RuntimeError):
    """An object storage operation failed."""


@dataclass(frozen=True)
class StorageSettings:
    """Connection settings; the two secrets are excluded from repr."""

    key_id: str = field(repr=False)
    app_key: str = field(repr=False)
    endpoint: str
    region: str
    bucket: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        """The contract's one B2_* parser (run_contract.bucket_settings), as this module's settings."""
        try:
            found = bucket_settings(os.environ if environ is None else environ)
        except BucketSettingsError as exc:
            raise StorageConfigError(f"object storage: {exc}") from None
        return cls(key_id=found.key_id, app_key=found.app_key, endpoint=found.endpoint, region=found.region,
                   bucket=found.bucket)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class SyncReport:
    """Keys (or relative paths) transferred and skipped as already identical."""

    transferred: tuple[str, ...]
    skipped: tuple[str, ...]


class ObjectStore:
    """A bucket on an S3-compatible endpoint (B2 in production, moto's server in tests)."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = _isolated_session().client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.key_id,
            aws_secret_access_key=settings.app_key,
            config=Config(
                signature_version="s3v4",
                # Path-style works on B2 and on a loopback endpoint, where a bucket sub-domain cannot resolve.
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                # boto3 >= 1.36 adds x-amz-checksum-* / x-amz-sdk-checksum-algorithm headers by default,
                # which B2 rejects ("Unsupported header"); we verify with our own sha256 instead.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ObjectStore:
        return cls(StorageSettings.from_env(environ))

    @property
    def client(self):
        """The underlying boto3 client (for event hooks in tests and advanced callers)."""
        return self._client

    def upload_file(self, path: str | Path, key: str, sha256: str | None = None) -> None:
        """Upload a local file to `key`, recording its sha256 in the object's metadata."""
        path = Path(path)
        digest = sha256 or sha256_of(path)
        with self._errors("upload", key):
            self._client.upload_file(
                str(path), self.bucket, key, ExtraArgs={"Metadata": {SHA256_METADATA: digest}}
            )

    def download_file(self, key: str, path: str | Path) -> Path:
        """Download `key` to `path` atomically; verify the sha256 recorded at upload, if any."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = self.remote_sha256(key)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            with self._errors("download", key):
                self._client.download_file(self.bucket, key, tmp_name)
            if expected is not None and sha256_of(tmp_name) != expected:
                raise StorageError(f"download of s3://{self.bucket}/{key}: sha256 differs from its metadata")
            os.replace(tmp_name, path)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return path

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def remote_sha256(self, key: str) -> str | None:
        """The sha256 stored with `key` at upload, or None if absent; StorageError if `key` is missing."""
        head = self._head(key)
        if head is None:
            raise StorageError(f"s3://{self.bucket}/{key}: no such object")
        return head.get("Metadata", {}).get(SHA256_METADATA)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """All objects under `prefix`, sorted by key."""
        objects: list[ObjectInfo] = []
        with self._errors("list", prefix):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                objects += [ObjectInfo(item["Key"], int(item["Size"])) for item in page.get("Contents", [])]
        return sorted(objects, key=lambda info: info.key)

    def sync_up(self, directory: str | Path, prefix: str) -> SyncReport:
        """Upload every file under `directory` to prefix/relative/path unless the same sha256 is there."""
        directory = Path(directory)
        if not directory.is_dir():
            raise StorageError(f"{directory}: not a directory to upload")
        transferred, skipped = [], []
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
            relative = path.relative_to(directory).as_posix()
            key = _join(prefix, relative)
            digest = sha256_of(path)
            head = self._head(key)
            if head is not None and head.get("Metadata", {}).get(SHA256_METADATA) == digest:
                skipped.append(relative)
                continue
            self.upload_file(path, key, sha256=digest)
            transferred.append(relative)
        return SyncReport(tuple(transferred), tuple(skipped))

    def sync_down(self, prefix: str, directory: str | Path) -> SyncReport:
        """Download every object under `prefix` into `directory`, skipping local files with equal sha256."""
        directory = Path(directory)
        base = prefix.rstrip("/") + "/" if prefix else ""
        transferred, skipped = [], []
        for info in self.list(base):
            relative = info.key[len(base):]
            if not relative or relative.endswith("/"):
                continue
            target = directory / relative
            if target.is_file() and target.stat().st_size == info.size:
                remote = self.remote_sha256(info.key)
                if remote is not None and remote == sha256_of(target):
                    skipped.append(relative)
                    continue
            self.download_file(info.key, target)
            transferred.append(relative)
        return SyncReport(tuple(transferred), tuple(skipped))

    def _head(self, key: str) -> dict | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(self._describe("head", key, exc)) from None
        except BotoCoreError as exc:
            raise StorageError(self._describe("head", key, exc)) from None

    def _errors(self, operation: str, key: str) -> _StorageErrors:
        return _StorageErrors(self, operation, key)

    def _describe(self, operation: str, key: str, exc: Exception) -> str:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
        else:
            detail = f"{type(exc).__name__}: {exc}"
        message = f"{operation} s3://{self.bucket}/{key} at {self.settings.endpoint} failed: {detail}"
        return _redact(message, (self.settings.key_id, self.settings.app_key))


class _StorageErrors:
    """Context manager turning botocore/boto3 failures into a redacted StorageError."""

    def __init__(self, store: ObjectStore, operation: str, key: str) -> None:
        self.store, self.operation, self.key = store, operation, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, traceback) -> bool:
        from boto3.exceptions import Boto3Error

        if exc is not None and isinstance(exc, ClientError | BotoCoreError | Boto3Error):
            # `from None`: the chained botocore exception could carry request details.
            raise StorageError(self.store._describe(self.operation, self.key, exc)) from None
        return False


def _isolated_session() -> boto3.session.Session:
    """A boto3 session that ignores ~/.aws files and AWS_PROFILE: credentials come only from B2_*.

    Without this, an AWS_PROFILE naming a profile absent on this machine fails client creation
    (ProfileNotFound) even though we pass every credential explicitly.
    """
    # (name in config file, env var names, default, converter): no env var -> AWS_PROFILE is not read.
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    return boto3.session.Session(botocore_session=core)


def _join(prefix: str, relative: str) -> str:
    return f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
