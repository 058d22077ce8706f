"""`python -m vastkit results RUN`: a run's metrics, plots and final checkpoints, from the bucket to a folder.

What comes by default is what a person looks at after a run: `metrics/` (metrics.json, metrics.md and the
PNG plots), the final checkpoint of each stage (`checkpoints/**/*final.pt`; the superseded `last.pt` files
stay in the bucket), heartbeat.json and status.json. `--logs` adds logs/, `--wandb` the offline W&B
directory (then `wandb sync DIR/wandb/offline-run-*`, see docs/runbooks/day2.md). Files already here with
the same size are not fetched again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import run_contract as contract
from vastkit.runs_bucket import RunBucket, RunObject
from vastkit.runs_view import from_bucket, summary


@dataclass(frozen=True)
class ResultsRequest:
    run: str
    into: Path
    checkpoints: bool = True
    logs: bool = False
    wandb: bool = False

    def __post_init__(self):
        problem = contract.run_name_error(self.run)
        if problem:
            raise ValueError(problem)


def wanted(obj: RunObject, request: ResultsRequest) -> bool:
    top = obj.key.split("/", 1)[0]
    if top == "metrics" or obj.key in (contract.HEARTBEAT_FILE, contract.STATUS_FILE):
        return True
    if top == "checkpoints":
        return request.checkpoints and obj.key.endswith("final.pt")
    if top == contract.LOGS_DIR:
        return request.logs
    return top == "wandb" and request.wandb


@dataclass
class Fetched:
    into: Path
    fetched: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # in the bucket, not asked for


def fetch(bucket: RunBucket, request: ResultsRequest, say: Callable[[str], None] = print) -> Fetched:
    objects = bucket.objects(request.run)
    if not objects:
        raise LookupError(
            f"{bucket.where(request.run)} is empty: no run {request.run} has synced there "
            "(python -m vastkit runs lists the runs)"
        )
    out = Fetched(into=request.into)
    root = request.into.resolve()
    for obj in objects:
        if not wanted(obj, request):
            out.left.append(obj.key)
            continue
        path = (root / obj.key).resolve()
        if root not in path.parents:
            raise ValueError(f"{bucket.where(request.run, obj.key)}: a key that leaves {root}; not fetched")
        if path.is_file() and path.stat().st_size == obj.size:
            out.unchanged.append(obj.key)
            continue
        bucket.download(request.run, obj.key, path)
        out.fetched.append(obj.key)
    return out


def report(bucket: RunBucket, request: ResultsRequest, done: Fetched) -> list[str]:
    row = from_bucket(
        request.run,
        _json(done.into / contract.HEARTBEAT_FILE),
        _json(done.into / contract.STATUS_FILE),
        time.time(),
    )
    lines = summary(row)
    plots = sorted(k for k in done.fetched + done.unchanged if k.endswith(".png"))
    finals = sorted(k for k in done.fetched + done.unchanged if k.endswith("final.pt"))
    lines += [
        f"into {done.into}/: {len(done.fetched)} fetched, {len(done.unchanged)} already here",
        f"plots: {', '.join(plots) or 'none'}",
        f"final checkpoints: {', '.join(finals) or 'none'}",
    ]
    skipped = {k.split("/", 1)[0] for k in done.left}
    if skipped:
        lines.append(
            f"left in {bucket.where(request.run)}: {', '.join(sorted(skipped))} "
            "(--logs, --wandb fetch those; superseded last.pt files stay there)"
        )
    if (done.into / "wandb").is_dir():
        lines.append(f"W&B offline run: wandb sync {done.into}/wandb/offline-run-*")
    table = done.into / "metrics" / "metrics.md"
    if table.is_file():
        lines += ["", *table.read_text().rstrip().splitlines()]
    else:
        lines.append("no evaluation table (metrics/metrics.md): the run did not reach its evaluate stage")
    return lines


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
