"""One run as a person reads it, whether it is live (the API and its files over SSH) or finished (the bucket).

A `RunRow` is built by `from_live` or `from_bucket`, shown as a table line (`table`) or as a few lines of
detail (`detail`, what status.yml prints). The heartbeat's age is measured on the instance's clock when the
run is live; a live run whose heartbeat nobody has written for `STALE_HEARTBEAT_S` is flagged STALE (a dead
supervisor looks just like a quiet one otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import run_contract as contract
from vastkit.cost import InstanceCost, instance_cost, money, supervisor_cost
from vastkit.records import Instance
from vastkit.runs_remote import LiveRead


def hmm(seconds: float | None) -> str:
    """`h:mm`, minutes rounded up (33 s left reads 0:01, not 0:00); `-` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    minutes = math.ceil(seconds / 60.0)
    return f"{minutes // 60}:{minutes % 60:02d}"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RunRow:
    name: str
    where: str  # "#<instance id>" (live) or "bucket" (finished)
    state: str
    stage: str | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eta_s: float | None = None
    gpu: str | None = None
    dph: float | None = None
    age_s: float | None = None
    cost: float | None = None  # live: the instance's age x $/h; finished: the final accounting
    supervisor_cost: float | None = None
    heartbeat_age_s: float | None = None
    stale: bool = False
    wandb: str | None = None
    error: str | None = None
    ending: str | None = None
    ending_reason: str | None = None
    live: bool = False
    instance: Instance | None = field(default=None, repr=False, compare=False)
    read: LiveRead | None = field(default=None, repr=False, compare=False)
    instance_cost: InstanceCost | None = field(default=None, repr=False, compare=False)
    heartbeat: dict | None = field(default=None, repr=False, compare=False)
    status: dict | None = field(default=None, repr=False, compare=False)


def _progress(beat: dict, status: dict) -> dict:
    """status.json (the pipeline's word, fresher) over heartbeat.json (the supervisor's copy of it)."""
    return {
        "stage": status.get("stage") or beat.get("stage"),
        "step": status.get("step", beat.get("step")),
        "total_steps": status.get("total_steps") or beat.get("total_steps"),
        "loss": _num(status.get("loss")),
        "eta_s": _num(status.get("eta_s")),
        "wandb": status.get("wandb_url") or beat.get("wandb_url"),
    }


def is_stale(beat: dict | None, age_s: float | None) -> bool:
    """A heartbeat nobody has written for too long, on a run not yet done (a done run stops writing)."""
    return (
        age_s is not None
        and age_s > contract.STALE_HEARTBEAT_S
        and (beat or {}).get("phase") != contract.PHASE_DONE
    )


def from_live(instance: Instance, read: LiveRead | None, now: float) -> RunRow:
    """A live instance: its state from the API, the run's from its files when SSH answered."""
    beat = (read.heartbeat if read else None) or {}
    status = (read.status if read else None) or {}
    updated = _num(beat.get("updated_epoch"))
    beat_age = max(0.0, (read.clock or now) - updated) if read and updated is not None else None
    if not instance.is_running:
        state = instance.actual_status or "created"
    elif read is None or not read.reached:
        state = "unreachable"
    else:
        state = status.get("state") or beat.get("state") or "no heartbeat yet"
    cost = instance_cost(instance, now)
    gpu = f"{instance.num_gpus or 1}x {instance.gpu_name}" if instance.gpu_name else None
    return RunRow(
        name=instance.label or f"vast-{instance.id}",
        where=f"#{instance.id}",
        state=state,
        gpu=gpu,
        dph=instance.dph_total,
        age_s=cost.age_s,
        cost=cost.estimate,
        supervisor_cost=supervisor_cost(beat),
        heartbeat_age_s=beat_age,
        stale=is_stale(beat, beat_age),
        error=status.get("error") or beat.get("error"),
        ending=beat.get("ending"),
        ending_reason=beat.get("ending_reason"),
        live=True,
        instance=instance,
        read=read,
        instance_cost=cost,
        heartbeat=beat or None,
        status=status or None,
        **_progress(beat, status),
    )


def from_bucket(name: str, beat: dict | None, status: dict | None, now: float) -> RunRow:
    """A run the bucket remembers: its final heartbeat (state, ending, the agent's final cost) and status."""
    beat, status = beat or {}, status or {}
    updated = _num(beat.get("updated_epoch"))
    created = _num(beat.get("created_at"))
    state = beat.get("state") or status.get("state") or "no heartbeat"
    return RunRow(
        name=name,
        where="bucket",
        state=state,
        dph=_num(beat.get("dph")),
        age_s=max(0.0, now - created) if created else None,
        cost=supervisor_cost(beat),
        supervisor_cost=supervisor_cost(beat),
        heartbeat_age_s=max(0.0, now - updated) if updated is not None else None,
        error=beat.get("error") or status.get("error"),
        ending=beat.get("ending"),
        ending_reason=beat.get("ending_reason"),
        heartbeat=beat or None,
        status=status or None,
        **{**_progress(beat, status), "eta_s": None},
    )


COLUMNS = (
    "RUN",
    "WHERE",
    "STATE",
    "STAGE",
    "STEP",
    "LOSS",
    "ETA",
    "GPU",
    "$/H",
    "AGE",
    "COST",
    "HEARTBEAT",
    "W&B",
)


def _cells(row: RunRow) -> tuple[str, ...]:
    step = "-" if row.step is None else f"{row.step}/{row.total_steps or '?'}"
    state = row.state + (f" ({row.ending})" if row.ending else "")
    beat = ago(row.heartbeat_age_s) + (" STALE" if row.stale else "")
    wandb = (
        row.wandb
        if row.wandb and row.wandb.startswith("http")
        else ("offline" if row.wandb and row.wandb != "disabled" else "-")
    )
    return (
        row.name,
        row.where,
        state,
        row.stage or "-",
        step,
        "-" if row.loss is None else f"{row.loss:.4g}",
        hmm(row.eta_s),
        row.gpu or "-",
        "-" if row.dph is None else f"{row.dph:.4f}",
        hmm(row.age_s),
        money(row.cost),
        beat,
        wandb,
    )


def table(rows: list[RunRow]) -> list[str]:
    """A plain aligned table (no terminal library: the controller install stays small)."""
    cells = [COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]


def detail(row: RunRow, *, log_lines: int = 0) -> list[str]:
    """The run in a few sentences (status.yml's output): what, where, how far, how healthy, what it costs."""
    if row.live:
        return _live_detail(row, log_lines)
    return summary(row)


def _live_detail(row: RunRow, log_lines: int) -> list[str]:
    inst, read = row.instance, row.read
    cost = row.instance_cost
    storage = f" (disk {money(cost.storage_dph)}/h of it)" if cost and cost.storage_dph else ""
    lines = [
        f"{row.name}: instance {inst.id} {inst.actual_status} ({inst.status_msg or ''}), {inst.gpu_name} "
        f"x{inst.num_gpus}, ${(inst.dph_total or 0):.4f}/h incl. disk{storage}, up {hmm(row.age_s)} h:mm, "
        f"cost so far ~{money(row.cost)} (age x $/h)"
        + (
            f"; supervisor's accounting {money(row.supervisor_cost)}"
            if row.supervisor_cost is not None
            else ""
        )
    ]
    address = inst.ssh_address()
    if inst.is_running:
        where = f"ssh -p {address[1]} root@{address[0]}" if address else "no address"
        lines.append(
            f"SSH: {where}"
            if read and read.reached
            else f"SSH: unreachable ({where}): {read.error if read else 'not read'}"
        )
        if read and read.reached:
            gpu = (
                f"{read.gpu_util}%"
                if read.gpu_util
                else (f"{inst.gpu_util:g}% (API)" if inst.gpu_util is not None else "?")
            )
            lines.append(f"GPU utilisation: {gpu}")
    if row.heartbeat or row.status:
        lines.append(
            f"training: {row.state}, stage {row.stage or '?'}, step {'?' if row.step is None else row.step}"
            f"/{row.total_steps or '?'}, loss {'?' if row.loss is None else f'{row.loss:g}'}, "
            f"eta {hmm(row.eta_s) if row.eta_s is not None else '?'}"
            + (f", error: {row.error}" if row.error else "")
        )
    elif read and read.reached:
        lines.append("training: no status.json yet")
    if row.heartbeat_age_s is not None:
        lines.append(
            f"heartbeat: {row.heartbeat_age_s:.0f} s old"
            + (
                f" - STALE: nothing has written it for over {contract.STALE_HEARTBEAT_S:.0f} s; the run may "
                "be dead (see docs/runbooks/training-crashed.md)"
                if row.stale
                else ""
            )
        )
    lines += _ending(row)
    if row.wandb:
        lines.append(f"W&B: {row.wandb}")
    if log_lines and read and read.log_text.strip():
        lines.append(f"last log lines ({read.log}):")
        lines += [f"  {line}" for line in read.log_text.rstrip("\n").splitlines()]
    return lines


def _ending(row: RunRow) -> list[str]:
    if not row.ending:
        return []
    beat = row.heartbeat or {}
    retry = (
        f" (attempt {beat.get('ending_attempts')}, last error: {beat['ending_error']})"
        if beat.get("ending_error")
        else ""
    )
    return [f"billing: {row.ending.upper()} - {row.ending_reason or ''}{retry}"]


def summary(row: RunRow) -> list[str]:
    """A finished run, from the bucket: how it ended, what it cost, where its W&B run is."""
    beat = row.heartbeat or {}
    elapsed = _num(beat.get("elapsed_s"))
    lines = [
        f"{row.name}: {row.state}"
        + (f" at stage {row.stage}" if row.stage else "")
        + (f", step {row.step}/{row.total_steps or '?'}" if row.step is not None else "")
        + (f" after {hmm(elapsed)} h:mm" if elapsed else "")
    ]
    if row.error:
        lines.append(f"error: {row.error}")
    lines += _ending(row)
    if beat.get("synced") is False:
        lines.append(f"final sync FAILED: {beat.get('sync_error') or 'see logs/supervisor.log'}")
    rate = f" at ${row.dph:.4f}/h incl. disk" if row.dph is not None else ""
    lines.append(f"cost: {money(row.cost)}{rate} (the supervisor's accounting, from the instance's creation)")
    if row.wandb:
        offline = not row.wandb.startswith("http") and row.wandb != "disabled"
        lines.append(
            f"W&B: {row.wandb}"
            + (
                " (offline: `python -m vastkit results RUN --wandb`, then "
                "`wandb sync`; see docs/runbooks/day2.md)"
                if offline
                else ""
            )
        )
    return lines
