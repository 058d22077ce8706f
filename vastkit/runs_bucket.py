"""The runs' record in the bucket (`runs/<name>/...`, run_contract's layout), read from the controller.

Finished runs live only here once their instance destroyed itself: the final heartbeat (state, ending,
cost), status.json, the metrics and the checkpoints. Settings come from the controller's own B2_* (the
values setup_env.yml pushes into the account), parsed by the contract's one parser. The client package does
not import `training`, so this is its own small reader; credentials never appear in its messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import run_contract as contract

SHA256_METADATA = "sha256"  # what the pipeline's uploads record (x-amz-meta-sha256); rclone's carry none


class BucketError(RuntimeError):
    """Reading the bucket failed; the message names the bucket and key, never a credential."""


@dataclass(frozen=True)
class RunObject:
    key: str  # relative to runs/<name>/
    size: int


class RunBucket:
    """Read access to `s3://$B2_BUCKET/runs/`."""

    def __init__(self, settings: contract.BucketSettings):
        self.bucket = settings.bucket
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.key_id,
            aws_secret_access_key=settings.app_key,
            # Path-style works on B2 and on a loopback endpoint; B2 rejects boto3's default checksum headers.
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunBucket:
        """Raises run_contract.BucketSettingsError (naming the variables, never their values) when B2_* is
        incomplete or malformed."""
        environ = os.environ if environ is None else environ
        try:
            return cls(contract.bucket_settings(environ))
        except contract.BucketSettingsError as exc:
            raise contract.BucketSettingsError(redact(str(exc), environ)) from None

    def where(self, run: str, key: str = "") -> str:
        return f"s3://{self.bucket}/{contract.run_prefix(run)}/{key}"

    def run_names(self) -> list[str]:
        """Every `runs/<name>/` in the bucket."""
        names: list[str] = []
        with self._errors("list", f"{contract.RUNS_PREFIX}/"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{contract.RUNS_PREFIX}/", Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(contract.RUNS_PREFIX) + 1 :].rstrip("/")
                    if name and contract.run_name_error(name) is None:
                        names.append(name)
        return sorted(names)

    def objects(self, run: str, under: str = "") -> list[RunObject]:
        prefix = f"{contract.run_prefix(run)}/"
        found: list[RunObject] = []
        with self._errors("list", prefix + under):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix + under
            ):
                found += [
                    RunObject(obj["Key"][len(prefix) :], int(obj["Size"])) for obj in page.get("Contents", [])
                ]
        return sorted(found, key=lambda o: o.key)

    def read(self, run: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        full = f"{contract.run_prefix(run)}/{key}"
        try:
            with self._errors("read", full):
                return self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except _Missing:
            return None

    def read_json(self, run: str, key: str) -> dict | None:
        """A JSON object, or None when absent or not a complete object (a sync caught mid-write)."""
        raw = self.read(run, key)
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def download(self, run: str, key: str, path: Path) -> Path:
        """Fetch into `path` atomically, verifying the sha256 recorded at upload when there is one."""
        full = f"{contract.run_prefix(run)}/{key}"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            with self._errors("download", full):
                head = self._client.head_object(Bucket=self.bucket, Key=full)
                self._client.download_file(self.bucket, full, tmp)
            expected = (head.get("Metadata") or {}).get(SHA256_METADATA)
            if expected and _sha256(Path(tmp)) != expected:
                raise BucketError(
                    f"download of s3://{self.bucket}/{full}: sha256 differs from the one recorded "
                    "at upload (a broken transfer); run the command again"
                )
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    def _errors(self, what: str, key: str):
        return _BucketErrors(self.bucket, what, key)


def redact(text: str, environ: Mapping[str, str]) -> str:
    """`text` with every B2_* value replaced by its name: this output ends up in logs and CI transcripts."""
    for name in contract.B2_ENV:
        raw = (environ.get(name) or "").strip()
        for value in sorted({raw, raw.rstrip("/")}, key=len, reverse=True):
            if len(value) >= 3:
                text = text.replace(value, f"${name}")
    return text


class _Missing(Exception):
    pass


class _BucketErrors:
    """Turns boto errors into BucketError (or _Missing for a 404) naming the operation and key."""

    def __init__(self, bucket: str, what: str, key: str):
        self.bucket, self.what, self.key = bucket, what, key

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, _tb):
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _Missing() from None
            raise BucketError(
                f"{self.what} s3://{self.bucket}/{self.key}: {code or 'error'} "
                f"({exc.response.get('Error', {}).get('Message', '')}); check B2_BUCKET, "
                "B2_S3_ENDPOINT and the key's permissions"
            ) from None
        if isinstance(exc, BotoCoreError):
            raise BucketError(
                f"{self.what} s3://{self.bucket}/{self.key}: {str(exc)[:200]}; is "
                "B2_S3_ENDPOINT reachable from here?"
            ) from None
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
