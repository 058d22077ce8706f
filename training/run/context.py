"""What every stage receives (StageContext) and returns (StageResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.config import Config
from training.run.paths import RunPaths
from training.run.runtime import Runtime
from training.run.stopping import StopRequest
from training.run.tracking import Tracker
from training.store.checkpoint_store import CheckpointStore
from training.store.datafiles import DataPlan


class InjectedFailure(RuntimeError):
    """Raised mid-stage when TRAIN_FAIL_AT_STAGE names the stage (a test hook for failure paths)."""


@dataclass
class StageContext:
    cfg: Config
    paths: RunPaths
    runtime: Runtime
    tracker: Tracker
    checkpoints: CheckpointStore
    data: DataPlan
    reset_cache: bool = True
    fail_at: str | None = None
    stop: StopRequest = field(default_factory=StopRequest)

    @property
    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def maybe_fail(self, stage: str, where: str) -> None:
        if self.fail_at == stage:
            raise InjectedFailure(f"TRAIN_FAIL_AT_STAGE={stage}: injected failure {where}")


@dataclass
class StageResult:
    stage: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    wall_s: float = 0.0
    samples_per_s: float | None = None
    skipped: bool = False
