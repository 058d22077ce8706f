"""Checkpoints on local disk, mirrored to the bucket under `runs/<run_name>/checkpoints/` when B2_* is set.

Rank 0 writes; every save of a file is followed by its upload, so a preempted machine loses at most
`ckpt_every` steps. On a fresh machine with no local checkpoints the pipeline calls `fetch_missing`
first, and training resumes from whatever the bucket holds.

An upload that fails (the bucket unreachable for a while) does not end training: the file stays on local
disk, the upload is retried at every later save, and the supervisor's syncs copy whatever is still missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch

from training.run.paths import RunPaths, atomic_write_json
from training.store.checkpoint import load_checkpoint, save_checkpoint


class RemoteStore(Protocol):
    """The part of training.store.bucket's object store that checkpoints need."""

    def upload_file(self, path: Path, key: str) -> None: ...
    def download_file(self, key: str, path: Path) -> Path: ...
    def list(self, prefix: str = "") -> list: ...  # objects with a `.key`


def remote_prefix(run_name: str) -> str:
    return f"runs/{run_name}/"


def remote_from_env(environ: dict[str, str] | None = None) -> RemoteStore | None:
    """The B2 object store when any B2_* variable is set (an incomplete set is an error), else None.

    boto3 is imported only then: a GPU box without B2 credentials needs no boto3.
    """
    environ = os.environ if environ is None else environ
    if not any(name.startswith("B2_") and value.strip() for name, value in environ.items()):
        return None
    from training.store.bucket import ObjectStore

    return ObjectStore.from_env(environ)


class CheckpointStore:
    def __init__(self, paths: RunPaths, run_name: str, *, is_main: bool, remote: RemoteStore | None = None,
                 log=print) -> None:
        self.paths = paths
        self.run_name = run_name
        self.is_main = is_main
        self.remote = remote
        self._log = log
        self._pending: dict[str, Path] = {}  # key -> local file whose upload failed

    def path(self, folder: str, name: str) -> Path:
        return self.paths.stage_checkpoints(folder) / name

    def key(self, folder: str, name: str) -> str:
        return f"{remote_prefix(self.run_name)}checkpoints/{folder}/{name}"

    def exists(self, folder: str, name: str) -> bool:
        return self.path(folder, name).is_file()

    def save(self, folder: str, name: str, payload: dict[str, Any]) -> None:
        if not self.is_main:
            return
        path = self.path(folder, name)
        save_checkpoint(path, payload)
        self._upload(path, self.key(folder, name))

    def write_marker(self, folder: str, name: str, payload: dict[str, Any]) -> None:
        """A small JSON beside a final checkpoint (uid, upstream uids, step): cheap to read for skip checks."""
        if not self.is_main:
            return
        path = self.path(folder, name)
        atomic_write_json(path, payload)
        self._upload(path, self.key(folder, name))

    def read_marker(self, folder: str, name: str) -> dict[str, Any] | None:
        path = self.path(folder, name)
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None

    def load(self, folder: str, name: str, *, config: dict[str, Any], kind: str,
             resuming: bool = False) -> dict[str, Any]:
        return load_checkpoint(self.path(folder, name), config=config, kind=kind, resuming=resuming)

    def remove(self, folder: str, name: str) -> None:
        """Drop a superseded file locally (the bucket keeps it: harmless, and final.pt wins on fetch)."""
        if self.is_main:
            self.path(folder, name).unlink(missing_ok=True)

    def upload_file(self, path: Path, relative_key: str) -> None:
        """Any other run artefact (metrics, plots) under the run's prefix."""
        if self.is_main:
            self._upload(path, f"{remote_prefix(self.run_name)}{relative_key}")

    @property
    def pending_uploads(self) -> list[str]:
        return sorted(self._pending)

    def _upload(self, path: Path, key: str) -> None:
        """Upload `path` (and, first, whatever failed before); a failure is logged and retried later."""
        if self.remote is None:
            return
        self._pending[key] = path
        for pending_key, pending_path in list(self._pending.items()):
            if not pending_path.is_file():  # superseded meanwhile (last.pt removed after final.pt)
                self._pending.pop(pending_key)
                continue
            try:
                self.remote.upload_file(pending_path, pending_key)
            except Exception as exc:  # the bucket is down: training goes on, the next save or sync catches up
                self._log(f"upload of {pending_key} failed ({type(exc).__name__}: {str(exc)[:200]}); kept on "
                          f"local disk, retried at the next save ({len(self._pending)} pending)")
                return
            self._pending.pop(pending_key)

    def fetch_missing(self, folders: list[str]) -> list[str]:
        """For each folder with no local checkpoint, download the run's files from the bucket."""
        if self.remote is None or not self.is_main:
            return []
        fetched = []
        for folder in folders:
            local = self.paths.stage_checkpoints(folder)
            if local.is_dir() and any(local.glob("*.pt")):
                continue
            prefix = f"{remote_prefix(self.run_name)}checkpoints/{folder}/"
            for key in (info.key for info in self.remote.list(prefix)):
                name = key[len(prefix):]
                if not name.endswith((".pt", ".json")) or "/" in name:
                    continue
                self.remote.download_file(key, local / name)
                fetched.append(f"{folder}/{name}")
        self._drop_superseded(folders)
        if fetched:
            self._log(f"fetched checkpoints from the bucket: {', '.join(fetched)}")
        return fetched

    def _drop_superseded(self, folders: list[str]) -> None:
        """A last.pt next to a final.pt of the same prefix is stale (the stage finished), unless it is further
        along: a final checkpoint being trained longer ("steps" raised) keeps its last.pt."""
        for folder in folders:
            for final in self.paths.stage_checkpoints(folder).glob("*final.pt"):
                last = final.with_name(final.name.replace("final.pt", "last.pt"))
                if last.is_file() and not _step_of(last) > _step_of(final):
                    last.unlink()


def _step_of(path: Path) -> int:
    """A checkpoint's step (-1 when unreadable: such a file is never kept for it)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True).get("step", -1))
    except Exception:  # a truncated or foreign file: torch raises many types
        return -1
