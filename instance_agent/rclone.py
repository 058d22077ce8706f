"""rclone against the run's bucket, configured from the environment only.

rclone reads a remote's settings from `RCLONE_CONFIG_<REMOTE>_<OPTION>` variables, so the `B2_*` account
env-vars are mapped onto a remote named `b2` in the child's environment: no config file is written and no
secret is ever in a process argument (where `ps` would show it).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from instance_agent.environ import container_environ
from run_contract import B2_REQUIRED_ENV, BucketSettingsError, bucket_settings

REMOTE = "b2"
REQUIRED_VARS = B2_REQUIRED_ENV
# rclone's S3 backend fails with LoadCustomCABundleError when AWS_CA_BUNDLE is set (its HTTP transport is not
# the AWS SDK's). A Vast instance has none; some build machines do. The system trust store still applies.
UNSUPPORTED_VARS = ("AWS_CA_BUNDLE",)
_RCLONE_DIR_NOT_FOUND = 3  # rclone's documented exit code for "directory not found"


class BucketConfigError(RuntimeError):
    """The environment does not describe a bucket; says which variables to set."""


class RcloneError(RuntimeError):
    """An rclone command failed; carries its exit code and the tail of its log (never its environment)."""

    def __init__(self, what: str, returncode: int, log_tail: str):
        self.returncode = returncode
        super().__init__(f"{what} failed (rclone exit {returncode}): {log_tail.strip()[-1500:] or 'no output'}")


def rclone_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` plus the `b2` remote's settings, minus what rclone cannot handle. Pure: tested directly."""
    try:
        found = bucket_settings(environ)
    except BucketSettingsError as exc:
        raise BucketConfigError(str(exc)) from None
    env = {k: v for k, v in environ.items() if k not in UNSUPPORTED_VARS and not k.startswith("RCLONE_CONFIG_")}
    prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
    env.update({
        "RCLONE_CONFIG": "/dev/null",  # never read (or write) a config file
        prefix + "TYPE": "s3",
        prefix + "PROVIDER": "Other",  # B2's S3-compatible API (and moto in tests)
        prefix + "ENDPOINT": found.endpoint,
        prefix + "ACCESS_KEY_ID": found.key_id,
        prefix + "SECRET_ACCESS_KEY": found.app_key,
        prefix + "REGION": found.region,
        prefix + "FORCE_PATH_STYLE": "true",
        prefix + "NO_CHECK_BUCKET": "true",  # bucket-scoped B2 keys may not create buckets
    })
    return env


@dataclass(frozen=True)
class Bucket:
    """The run's bucket as rclone sees it (`b2:<name>/<key>`)."""

    name: str
    env: Mapping[str, str] = field(repr=False)
    binary: str = "rclone"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, binary: str = "rclone") -> Bucket:
        """From `environ`, by default the container's (PID 1's under ours: an SSH session has no B2_*)."""
        environ = container_environ() if environ is None else environ
        return cls(name=environ.get("B2_BUCKET", ""), env=rclone_env(environ), binary=binary)

    def remote(self, key: str = "") -> str:
        return f"{REMOTE}:{self.name}/{key.strip('/')}".rstrip("/")

    def url(self, key: str = "") -> str:
        """How messages name an object: s3://bucket/key."""
        return f"s3://{self.name}/{key.strip('/')}"

    def run(self, args: Sequence[str], what: str, *, timeout: float | None = None) -> str:
        """Run `rclone <args>`, returning stdout; RcloneError with rclone's own log on failure."""
        try:
            done = subprocess.run(
                [self.binary, *args], env=dict(self.env), capture_output=True, text=True, timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise RcloneError(what, 127, f"{self.binary} not found; the bootstrap role installs it") from None
        except subprocess.TimeoutExpired:
            raise RcloneError(what, 124, f"no answer within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise RcloneError(what, done.returncode, done.stderr)
        return done.stdout

    def list_files(self, prefix: str, timeout: float = 120) -> dict[str, dict]:
        """Objects directly under `prefix`, by name, with rclone's `Size` and `Hashes` (md5 from S3).

        An empty prefix is an empty listing, not an error (S3 has no directories).
        """
        try:
            out = self.run(["lsjson", "--files-only", "--hash", self.remote(prefix)],
                           f"listing {self.url(prefix)}", timeout=timeout)
        except RcloneError as exc:
            if exc.returncode == _RCLONE_DIR_NOT_FOUND:
                return {}
            raise
        return {row["Name"]: row for row in json.loads(out or "[]")}

    def read_text(self, key: str, timeout: float = 60) -> str:
        return self.run(["cat", self.remote(key)], f"reading {self.url(key)}", timeout=timeout)

    def copy_file(self, path: str | os.PathLike, key: str, timeout: float = 120) -> None:
        """One local file to `key` (the bucket's copy of the heartbeat, which must say how a run ended)."""
        self.run(["copyto", str(path), self.remote(key), "--retries", "2", "--low-level-retries", "5"],
                 f"copying {path} to {self.url(key)}", timeout=timeout)

    def put_bytes(self, data: bytes, key: str, timeout: float = 60) -> None:
        """`data` to `key` from memory (rclone rcat): works on a full disk."""
        try:
            done = subprocess.run([self.binary, "rcat", self.remote(key)], input=data, env=dict(self.env),
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RcloneError(f"writing {self.url(key)}", 124, f"no answer within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise RcloneError(f"writing {self.url(key)}", done.returncode, done.stderr.decode(errors="replace"))
