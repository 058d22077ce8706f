"""Copy a run's artifacts to `s3://$B2_BUCKET/runs/<run_name>/`: one rclone call, parallel transfers."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vastkit.supervisor.rclone import Bucket

# Paths under the code dir that make up a run's record. Checkpoints are large and the pipeline pushes them
# itself as it goes; the periodic sync leaves them out, the final one includes them (a no-op when in place).
LIGHT_ARTIFACTS = ("logs/**", "metrics/**", "wandb/**", "status.json", "heartbeat.json")
CHECKPOINTS = ("checkpoints/**",)


@dataclass(frozen=True)
class SyncReport:
    destination: str
    seconds: float
    checkpoints: bool

    def to_dict(self) -> dict:
        return asdict(self)


def artifact_filters(include_checkpoints: bool) -> list[str]:
    """rclone filter rules anchored at the code dir: the artifacts in, everything else (code, data) out."""
    patterns = LIGHT_ARTIFACTS + (CHECKPOINTS if include_checkpoints else ())
    rules: list[str] = []
    for pattern in patterns:
        rules += ["--filter", f"+ /{pattern}"]
    return rules + ["--filter", "- **"]


def sync_artifacts(bucket: Bucket, code_dir: Path, prefix: str, *, include_checkpoints: bool = True,
                   transfers: int = 8, timeout: float = 1800) -> SyncReport:
    started = time.monotonic()
    bucket.run(
        ["copy", str(code_dir), bucket.remote(prefix), *artifact_filters(include_checkpoints),
         "--transfers", str(transfers), "--retries", "3", "--low-level-retries", "10",
         "--stats-log-level", "NOTICE"],
        f"syncing artifacts to {bucket.url(prefix)}", timeout=timeout)
    return SyncReport(destination=bucket.url(prefix) + "/", seconds=round(time.monotonic() - started, 3),
                      checkpoints=include_checkpoints)
