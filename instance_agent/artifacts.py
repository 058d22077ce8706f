"""Copy a run's artifacts to `s3://$B2_BUCKET/runs/<run_name>/`: a snapshot, then one rclone call.

The pipeline keeps writing while a sync runs (logs grow, status and W&B files are rewritten), and rclone
fails a file that changes under it ("source file is being updated", or an md5 mismatch after the upload).
So each sync first takes a snapshot: files that writers replace atomically (checkpoints) are hard-linked,
which is free and stable, and the rest are copied, which gives each a consistent prefix of itself. rclone
then uploads the snapshot, which nothing else touches.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from instance_agent.rclone import Bucket

log = logging.getLogger(__name__)

# Paths under the code dir that make up a run's record. Checkpoints are large and the pipeline pushes them
# itself as it goes; the periodic sync leaves them out, the final one includes them (a no-op when in place).
LIGHT_ARTIFACTS = ("logs", "metrics", "wandb", "status.json", "heartbeat.json")
CHECKPOINTS = ("checkpoints",)
SNAPSHOT_DIR = ".sync-snapshots"  # under the code dir: same filesystem, so checkpoints can be hard-linked


@dataclass(frozen=True)
class SyncReport:
    destination: str
    seconds: float
    checkpoints: bool
    files: int

    def to_dict(self) -> dict:
        return asdict(self)


def artifact_paths(code_dir: Path, include_checkpoints: bool) -> Iterator[Path]:
    """The artifact files under `code_dir`, relative to it. Dotfiles are left out: they are an atomic
    writer's work in progress (`.last.pt.x1y2.tmp`), replaced by the real file when done."""
    for top in LIGHT_ARTIFACTS + (CHECKPOINTS if include_checkpoints else ()):
        root = code_dir / top
        if root.is_file():
            yield Path(top)
        elif root.is_dir():
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield Path(folder, name).relative_to(code_dir)


def snapshot_artifacts(code_dir: Path, into: Path, include_checkpoints: bool) -> int:
    """Freeze the artifacts into `into`; returns how many files. A file that vanishes meanwhile is skipped."""
    count = 0
    for relative in artifact_paths(code_dir, include_checkpoints):
        source, target = code_dir / relative, into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if relative.parts[0] in CHECKPOINTS:
                try:
                    os.link(source, target)
                except OSError:  # another filesystem, or links refused: a copy is still a snapshot
                    shutil.copy2(source, target)
            else:
                shutil.copy2(source, target)
        except FileNotFoundError:
            continue
        count += 1
    return count


def sync_artifacts(bucket: Bucket, code_dir: Path, prefix: str, *, include_checkpoints: bool = True,
                   transfers: int = 8, timeout: float = 1800) -> SyncReport:
    started = time.monotonic()
    copy_args = ["--transfers", str(transfers), "--retries", "3", "--low-level-retries", "10",
                 "--stats-log-level", "NOTICE"]
    snapshots = code_dir / SNAPSHOT_DIR
    snapshot: Path | None = None
    try:
        snapshots.mkdir(parents=True, exist_ok=True)
        snapshot = Path(tempfile.mkdtemp(dir=snapshots))  # one per sync: a periodic and a final one may overlap
        files = snapshot_artifacts(code_dir, snapshot, include_checkpoints)
    except OSError as exc:
        # A full disk has no room for a snapshot. The data matter more: copy the live files (at the end of a
        # run nothing writes them any more; a periodic sync may see a file change and retry it next time).
        log.warning("no snapshot (%s): syncing the live files", exc)
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)
        files = sum(1 for _ in artifact_paths(code_dir, include_checkpoints))
        bucket.run(["copy", str(code_dir), bucket.remote(prefix), *_filters(include_checkpoints), *copy_args],
                   f"syncing artifacts to {bucket.url(prefix)} (live files)", timeout=timeout)
    else:
        try:
            bucket.run(["copy", str(snapshot), bucket.remote(prefix), *copy_args],
                       f"syncing artifacts to {bucket.url(prefix)}", timeout=timeout)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
    return SyncReport(destination=bucket.url(prefix) + "/", seconds=round(time.monotonic() - started, 3),
                      checkpoints=include_checkpoints, files=files)


def _filters(include_checkpoints: bool) -> list[str]:
    """rclone filter rules selecting what artifact_paths() selects (first match wins; dotfiles never)."""
    rules = ["--filter", "- .*", "--filter", "- .*/**"]
    for top in LIGHT_ARTIFACTS + (CHECKPOINTS if include_checkpoints else ()):
        rules += ["--filter", f"+ /{top}", "--filter", f"+ /{top}/**"]
    return [*rules, "--filter", "- **"]
