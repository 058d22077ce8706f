"""`python -m vastkit runs`: this project's runs, live and finished, in one table.

Live runs are the account's instances (by default those this project created: the `VASTKIT_OWNER` marker every
create sets), read over SSH; finished ones are the bucket's `runs/<name>/` (their final heartbeat and status).
A run that is both (a live run syncs its record as it goes) shows once, live. The selectors are status.yml's:
`--run NAME` (and its fleet NAME-1..N), `--id N`, `--label-prefix P`, `--older-than 6h`; an empty one is an
error, never "everything" (vastkit.selection).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from run_contract import BucketSettingsError
from vastkit.client import VastAPI
from vastkit.failover import is_owned
from vastkit.records import Instance
from vastkit.runs_bucket import BucketError, RunBucket
from vastkit.runs_remote import LiveRead, SshSettings, read_run
from vastkit.runs_view import RunRow, detail, from_bucket, from_live, table
from vastkit.selection import empty_selector_error, of_run, parse_age

READERS = 8  # SSH reads and bucket reads side by side: each costs a round trip, not CPU


@dataclass(frozen=True)
class Selector:
    """Which runs: at most one of run, instance_id, label_prefix; `older_than` narrows; `everyone` also shows
    instances this project did not create (status.yml with no selector: every instance of the account)."""

    run: str | None = None
    instance_id: int | None = None
    label_prefix: str | None = None
    older_than: float | None = None
    everyone: bool = False

    @classmethod
    def parse(
        cls,
        *,
        run: str | None = None,
        instance_id: str | int | None = None,
        label_prefix: str | None = None,
        older_than: str | None = None,
        everyone: bool = False,
    ) -> Selector:
        for name, value in (("run", run), ("label_prefix", label_prefix), ("older_than", older_than)):
            problem = empty_selector_error(name, value)
            if problem:
                raise ValueError(f"{problem}. Nothing was selected.")
        given = [
            n for n, v in (("run", run), ("id", instance_id), ("label_prefix", label_prefix)) if v is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"Give one selector, not {' and '.join(given)} (older_than narrows any of them)."
            )
        if instance_id is not None and not str(instance_id).isdigit():
            raise ValueError(
                f"id={instance_id} is no instance id: give the number `vastai show instances` shows."
            )
        return cls(
            run=run,
            instance_id=int(instance_id) if instance_id is not None else None,
            label_prefix=label_prefix,
            older_than=parse_age(older_than) if older_than else None,
            everyone=everyone,
        )

    @property
    def narrowed(self) -> bool:
        return self.run is not None or self.instance_id is not None or self.label_prefix is not None

    def takes_instance(self, instance: Instance, now: float) -> bool:
        if self.instance_id is not None and instance.id != self.instance_id:
            return False
        if self.run is not None and not of_run(instance, self.run):
            return False
        if self.label_prefix is not None and not (instance.label or "").startswith(self.label_prefix):
            return False
        if not self.narrowed and not self.everyone and not is_owned(instance):
            return False
        return self.older_than is None or bool(
            instance.start_date and now - instance.start_date >= self.older_than
        )

    def takes_name(self, name: str) -> bool:
        if self.instance_id is not None:
            return False  # an id names an instance; the bucket knows runs
        if self.run is not None:
            return name == self.run or (
                name.startswith(self.run + "-") and name[len(self.run) + 1 :].isdigit()
            )
        return self.label_prefix is None or name.startswith(self.label_prefix)

    def describe(self) -> str:
        return f"run={self.run or '-'}, id={self.instance_id if self.instance_id is not None else '-'}" + (
            f", label_prefix={self.label_prefix}" if self.label_prefix else ""
        )


@dataclass
class Sources:
    """Where runs are read from; `bucket` is None without B2_* here (`bucket_problem` says why)."""

    api: VastAPI
    ssh: SshSettings = field(default_factory=SshSettings)
    bucket: RunBucket | None = None
    bucket_problem: str = ""

    @classmethod
    def from_env(cls, ssh: SshSettings | None = None, *, use_bucket: bool = True) -> Sources:
        bucket, problem = None, "not read (--no-bucket)"
        if use_bucket:
            try:
                bucket, problem = RunBucket.from_env(os.environ), ""
            except BucketSettingsError as exc:
                problem = f"not read: {exc}"
        return cls(api=VastAPI.from_env(), ssh=ssh or SshSettings(), bucket=bucket, bucket_problem=problem)


def live_rows(
    sources: Sources, selector: Selector, now: float, *, log_lines: int = 0, gpu: bool = False
) -> list[RunRow]:
    if selector.instance_id is not None:
        found = sources.api.get_instance(selector.instance_id)
        instances = [found] if found is not None else []
    else:
        instances = sources.api.list_instances()
    chosen = sorted((i for i in instances if selector.takes_instance(i, now)), key=lambda i: i.id)

    def read(instance: Instance) -> LiveRead | None:
        if not instance.is_running or not instance.ssh_addresses():
            return None
        return read_run(instance, sources.ssh, log_lines=log_lines, gpu=gpu)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        reads = list(pool.map(read, chosen))
    return [from_live(i, r, now) for i, r in zip(chosen, reads, strict=True)]


def bucket_rows(
    bucket: RunBucket, selector: Selector, now: float, *, skip: set[str], limit: int
) -> list[RunRow]:
    """The bucket's runs not shown live, newest first (by their last heartbeat), at most `limit`."""
    names = [n for n in bucket.run_names() if n not in skip and selector.takes_name(n)]

    def read(name: str) -> RunRow:
        return from_bucket(
            name, bucket.read_json(name, "heartbeat.json"), bucket.read_json(name, "status.json"), now
        )

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        rows = list(pool.map(read, names))
    if selector.older_than is not None:
        rows = [r for r in rows if r.age_s is not None and r.age_s >= selector.older_than]
    rows.sort(key=lambda r: (r.heartbeat_age_s is None, r.heartbeat_age_s or 0.0))
    return rows[:limit]


@dataclass
class Listing:
    live: list[RunRow]
    finished: list[RunRow]
    notes: list[str]

    @property
    def rows(self) -> list[RunRow]:
        return self.live + self.finished


def collect(
    sources: Sources,
    selector: Selector,
    *,
    log_lines: int = 0,
    gpu: bool = False,
    limit: int = 20,
    now: Callable[[], float] = time.time,
) -> Listing:
    at = now()
    live = live_rows(sources, selector, at, log_lines=log_lines, gpu=gpu)
    notes: list[str] = []
    finished: list[RunRow] = []
    if sources.bucket is None:
        notes.append(f"finished runs (the bucket): {sources.bucket_problem}")
    else:
        try:
            finished = bucket_rows(sources.bucket, selector, at, skip={r.name for r in live}, limit=limit)
        except BucketError as exc:
            notes.append(f"finished runs (the bucket): {exc}")
    return Listing(live=live, finished=finished, notes=notes)


def render(
    listing: Listing,
    selector: Selector,
    *,
    details: bool = False,
    log_lines: int = 0,
    bucket: RunBucket | None = None,
) -> list[str]:
    if not listing.rows:
        what = "No instance matches" if selector.narrowed else "No runs of this project"
        return [f"{what} ({selector.describe()}): none live, none in the bucket.", *listing.notes]
    out = table(listing.rows)
    if details:
        for row in listing.rows:
            out += ["", *detail(row, log_lines=log_lines)]
            if not row.live and bucket is not None:
                out += metrics_table(bucket, row.name)
    stale = [r.name for r in listing.rows if r.stale]
    if stale:
        out += [
            "",
            f"STALE heartbeat: {', '.join(stale)} - the supervisor may be dead; see "
            "docs/runbooks/training-crashed.md, or reap with teardown.yml -e all_runs=true",
        ]
    return out + ([""] if listing.notes else []) + listing.notes


def metrics_table(bucket: RunBucket, name: str) -> list[str]:
    """The run's evaluation table (metrics/metrics.md), if it got that far."""
    try:
        text = bucket.read(name, "metrics/metrics.md")
    except BucketError as exc:
        return [f"evaluation table: {exc}"]
    return ["", *text.decode("utf-8", "replace").rstrip().splitlines()] if text else []
