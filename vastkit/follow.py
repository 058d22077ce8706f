"""`python -m vastkit follow RUN`: a run, stage by stage, with its log, until it ends; then its final record.

Each poll asks the API for the run's instance and, while it runs, reads heartbeat.json, status.json and the
new bytes of the current stage's log (`logs/<stage>.log`) over one SSH connection. The normal ending is the
instance destroying itself: SSH then breaks and the API stops listing it, so follow switches to the bucket,
where the agent's final heartbeat (state, ending, cost) and the metrics are, and prints the summary. Ctrl-C
stops following only; the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

import run_contract as contract
from vastkit.records import Instance
from vastkit.runs import Sources, metrics_table
from vastkit.runs_bucket import BucketError
from vastkit.runs_remote import connect, describe_error, read_run
from vastkit.runs_view import from_bucket, summary
from vastkit.waiting import SSH_NOT_READY


@dataclass(frozen=True)
class FollowSettings:
    poll_s: float = 5.0
    timeout_s: float = 48 * 3600.0  # a deadline for every wait: longer than any budget we allow by default
    appear_s: float = 300.0  # no instance and nothing in the bucket this long: no such run (a typo?)
    record_s: float = 120.0  # the instance is gone: how long the final heartbeat may take to be in the bucket
    logs: bool = True
    metrics: bool = True  # the evaluation table in the final summary
    backlog_bytes: int = 4096  # of the first log seen: where a late follower joins

    def __post_init__(self):
        for name in ("poll_s", "timeout_s", "appear_s", "record_s"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"follow: {name}={getattr(self, name)!r} must be a positive number of seconds"
                )


def describe(beat: dict) -> str:
    """One progress line from a heartbeat (the stage, its step, state, phase and cost)."""
    progress = (
        f" step {beat['step']}/{beat.get('total_steps') or '?'}" if beat.get("step") is not None else ""
    )
    cost = f", ${beat['cost_so_far']:.4f} so far" if isinstance(beat.get("cost_so_far"), (int, float)) else ""
    text = f"stage {beat.get('stage') or '-'}{progress}: {beat.get('state')} ({beat.get('phase')}{cost})"
    return text + (f" - {beat['error']}" if beat.get("error") else "")


class Follower:
    """One run, followed. `run()` returns the final heartbeat (None when the bucket has none)."""

    def __init__(
        self,
        sources: Sources,
        run: str,
        settings: FollowSettings | None = None,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.sources, self.name = sources, run
        self.settings = settings or FollowSettings()
        self.say, self.clock = say, clock
        self._client: paramiko.SSHClient | None = None
        self._client_id: int | None = None
        self._seen_instance: Instance | None = None
        self._said: dict[str, object] = {}
        self._log: str | None = None
        self._offset: int | None = None
        self._beat: dict | None = None

    def run(self) -> dict | None:
        started = self.clock()
        deadline = started + self.settings.timeout_s
        self.say(f"following run {self.name} (Ctrl-C stops following; the run goes on)")
        try:
            while True:
                instance = self._instance()
                if instance is not None:
                    self._seen_instance = instance
                    self._poll_instance(instance)
                    if self._ended_in_place():
                        self._print_summary(self._beat)
                        return self._beat
                else:
                    final = self._from_bucket(
                        appeared=self._seen_instance is not None, waited=self.clock() - started
                    )
                    if final is not None:
                        return final or None
                if self.clock() > deadline:
                    raise TimeoutError(
                        f"run {self.name} still going after {self.settings.timeout_s:.0f} s; "
                        f"see python -m vastkit runs --run {self.name}"
                    )
                time.sleep(self.settings.poll_s)
        finally:
            self._close()

    # -- the live instance --------------------------------------------------------------------------------

    def _instance(self) -> Instance | None:
        found = [i for i in self.sources.api.list_instances(label=self.name) if i.label == self.name]
        return min(found, key=lambda i: i.id) if found else None  # two of one run: the lower id is the run's

    def _poll_instance(self, instance: Instance) -> None:
        self._once(
            "instance",
            (instance.id, instance.actual_status),
            f"instance {instance.id}: {instance.actual_status or 'created'}"
            + (f" ({instance.status_msg})" if instance.status_msg else "")
            + (
                f", {instance.num_gpus or 1}x {instance.gpu_name} at ${instance.dph_total:.4f}/h"
                if instance.gpu_name and instance.dph_total
                else ""
            ),
        )
        if not instance.is_running or not instance.ssh_addresses():
            return
        try:
            client = self._connect(instance)
        except SSH_NOT_READY + (FileNotFoundError,) as exc:
            self._once("ssh", describe_error(exc), f"SSH: {describe_error(exc)} (retrying)")
            return
        read = read_run(
            instance,
            self.sources.ssh,
            client=client,
            log=self._log,
            log_offset=self._offset if self.settings.logs else None,
        )
        if not read.reached:
            self._close()  # going away (a self-destroy), or a network blip: reconnect next poll
            return
        beat, status = read.heartbeat or {}, read.status or {}
        if beat:
            self._beat = beat
            self._once(
                "progress",
                (beat.get("stage"), beat.get("state"), beat.get("phase")),
                f"[{beat.get('elapsed_s') or 0:6.0f} s] {describe(beat)}",
            )
        else:
            self._once(
                "progress",
                "none",
                "no heartbeat yet: the launch is handing the run over (code, "
                "requirements, data); the supervisor starts after that",
            )
        if self.settings.logs:
            self._tail(read, status.get("stage") or beat.get("stage"))

    def _ended_in_place(self) -> bool:
        """The run is over and its instance stays (auto_shutdown=false: stopped, or kept running)."""
        beat = self._beat or {}
        return (
            beat.get("state") in contract.FINAL_STATES
            and beat.get("phase") == contract.PHASE_DONE
            and beat.get("ending") in (contract.STOPPED, contract.KEPT)
        )

    def _tail(self, read, stage: str | None) -> None:
        if read.log is not None and read.log == self._log and read.log_size is not None:
            if self._offset is not None and read.log_size < self._offset:
                self._offset = 0  # replaced (a restarted stage): from the top
            elif read.log_text:
                for line in read.log_text.splitlines():
                    self.say(f"    {line}")
                self._offset = (self._offset or 0) + len(read.log_text.encode())
        wanted = f"{contract.LOGS_DIR}/{stage}.log" if stage else contract.PIPELINE_LOG
        if wanted != self._log:
            first = self._log is None
            self._log = wanted
            self.say(f"--- {wanted} ---")
            # A late follower joins near the end of the first log; a new stage's log is read from its start.
            self._offset = (
                max(0, (read.log_size or 0) - self.settings.backlog_bytes)
                if (first and read.log == wanted)
                else 0
            )

    def _connect(self, instance: Instance) -> paramiko.SSHClient:
        if self._client is None or self._client_id != instance.id or not _alive(self._client):
            self._close()
            self._client, self._client_id = connect(instance, self.sources.ssh), instance.id
        return self._client

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._client_id = None

    # -- the bucket ---------------------------------------------------------------------------------------

    def _from_bucket(self, *, appeared: bool, waited: float) -> dict | None:
        """The final heartbeat ({} when the run ended without one), or None to keep waiting."""
        self._close()
        if appeared:
            self._once(
                "gone",
                True,
                f"instance {self._seen_instance.id} is gone: reading the run's record from the bucket",
            )
        bucket = self.sources.bucket
        if bucket is None:
            if appeared or waited > self.settings.appear_s:
                self.say(f"the bucket: {self.sources.bucket_problem}")
                return self._beat or {}
            return None
        try:
            beat = bucket.read_json(self.name, contract.HEARTBEAT_FILE)
        except BucketError as exc:
            self._once("bucket", str(exc), f"the bucket: {exc} (retrying)")
            beat = None
        if beat is None or beat.get("state") not in contract.FINAL_STATES:
            if appeared and self._gone_for() < self.settings.record_s:
                return None  # the agent uploads its final heartbeat as it destroys the instance
            if not appeared and waited < self.settings.appear_s:
                self._once(
                    "waiting",
                    True,
                    f"no instance labelled {self.name} yet and no final record in "
                    f"{bucket.where(self.name)}: waiting (a launch may be renting)",
                )
                return None
            if not appeared and beat is None:
                raise LookupError(
                    f"no run {self.name}: no instance has this label and {bucket.where(self.name)} "
                    "holds no heartbeat (python -m vastkit runs lists the runs)"
                )
        self._print_summary(beat or self._beat or {})
        return beat or self._beat or {}

    def _gone_for(self) -> float:
        if "gone_at" not in self._said:
            self._said["gone_at"] = self.clock()
        return self.clock() - float(self._said["gone_at"])

    def _print_summary(self, beat: dict) -> None:
        bucket = self.sources.bucket
        status = bucket.read_json(self.name, contract.STATUS_FILE) if bucket else None
        row = from_bucket(self.name, beat, status, time.time())
        self.say("")
        for line in summary(row):
            self.say(line)
        if bucket is not None:
            try:
                objects = bucket.objects(self.name)
            except BucketError as exc:
                self.say(f"bucket: {exc}")
                return
            groups: dict[str, int] = {}
            for obj in objects:
                top = obj.key.split("/", 1)[0]
                groups[top] = groups.get(top, 0) + 1
            self.say(
                f"bucket {bucket.where(self.name)}: "
                + (", ".join(f"{k} ({v})" for k, v in sorted(groups.items())) or "empty")
            )
            for line in metrics_table(bucket, self.name) if self.settings.metrics else ():
                self.say(line)
            self.say(f"fetch it: python -m vastkit results {self.name}")

    def _once(self, key: str, value: object, line: str) -> None:
        """Say `line` when `value` differs from the last one said under `key`."""
        if self._said.get(key) != value:
            self._said[key] = value
            self.say(line)


def _alive(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def follow(
    sources: Sources, run: str, settings: FollowSettings | None = None, say: Callable[[str], None] = print
) -> dict | None:
    """Follow `run` to its end; the final heartbeat (None when none was ever written)."""
    return Follower(sources, run, settings, say).run()
