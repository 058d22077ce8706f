"""The run directory layout that the supervisor, Ansible's status task and the pipeline share."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunPaths:
    """<run-dir>/{logs/<stage>.log, checkpoints/<stage>/, cache/, metrics/, status.json} plus the data dir."""

    run_dir: Path
    data_dir: Path

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.run_dir / "cache"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "metrics"

    @property
    def status(self) -> Path:
        return self.run_dir / "status.json"

    def stage_log(self, stage: str) -> Path:
        return self.logs / f"{stage}.log"

    def stage_checkpoints(self, stage: str) -> Path:
        return self.checkpoints / stage

    def make(self) -> None:
        for folder in (self.logs, self.checkpoints, self.cache, self.metrics):
            folder.mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())
