"""Which instances a status, logs or teardown is about, and which ones the reaper may take.

Rules, each for a mistake that happened:
- An empty selector is an error, never "everything": `-e run=` (an unset shell variable) once destroyed an
  unrelated, unlabelled instance.
- A run selects its own instance and its fleet's (`NAME`, `NAME-1..N`), never an unlabelled one.
- The reaper takes only instances this project created (the `VASTKIT_OWNER` marker set at create), never
  by a label prefix that anyone's config name matches; and it decides by the run's health, not its age: a
  stale heartbeat, no supervisor after a grace period, or no way to reach it. `older_than` only narrows.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime

from vastkit.failover import PENDING, RUNNING, phase
from vastkit.records import Instance

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_STALE_AFTER = "15m"


def parse_age(text: str, what: str = "older_than") -> float:
    """'6h' -> 21600.0 seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise ValueError(f"{what}={text!r}: expected a number and a unit s, m, h or d, for example 6h or 90m")
    return float(match.group(1)) * UNITS[match.group(2)]


def empty_selector_error(name: str, value) -> str | None:
    """The message for a selector given as an empty string (None when it is fine or absent)."""
    if value is None or str(value).strip() != "":
        return None
    hints = {
        "run": "name the run, e.g. -e run=burgers32-20261128-1405",
        "label": "give the run's label",
        "label_prefix": "it would match every instance of the account; give a prefix or leave it out",
        "older_than": "give an age such as 6h or 90m, or leave it out",
        "stale_after": "give an age such as 15m, or leave it out",
    }
    return f"{name} is empty (an unset shell variable?): {hints.get(name, 'give a value or leave it out')}"


def of_run(instance: Instance, run: str) -> bool:
    """The run's own instance or one of its fleet (`run-1`, `run-2`, ...). Unlabelled never matches."""
    label = instance.label or ""
    return bool(label) and (label == run or re.fullmatch(re.escape(run) + r"-[0-9]+", label) is not None)


@dataclass(frozen=True)
class Probe:
    """What reading the run over SSH found: reached at all, heartbeat.json's text (None: no file), and the
    instance's clock when it was read (the heartbeat's age is measured on it, as status.yml does)."""

    reached: bool
    heartbeat: str | None = None
    error: str = ""
    clock: float | None = None

    @classmethod
    def from_dict(cls, raw: dict | None) -> Probe | None:
        if raw is None:
            return None
        try:
            clock = float(raw["clock"]) if raw.get("clock") not in (None, "") else None
        except (TypeError, ValueError):
            clock = None
        return cls(reached=bool(raw.get("reached")), heartbeat=raw.get("heartbeat") or None,
                   error=str(raw.get("error") or ""), clock=clock)


@dataclass(frozen=True)
class Verdict:
    reap: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def heartbeat_updated(text: str | None) -> float | None:
    """When a heartbeat.json text was written, as epoch seconds (`updated_epoch`, else `updated_at`); None when
    absent or unreadable."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if isinstance(data.get("updated_epoch"), (int, float)):
            return float(data["updated_epoch"])
        return datetime.fromisoformat(str(data.get("updated_at")).replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError, TypeError, OverflowError):
        return None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def reaper_verdict(instance: Instance, probe: Probe | None, *, now: float, stale_after: float) -> Verdict:
    """Whether the reaper destroys `instance` (one of this project's), and why, in words for the user."""
    age = now - instance.start_date if instance.start_date else None
    young = age is not None and age < stale_after
    grace = f"younger than stale_after={_ago(stale_after)}"
    state = phase(instance)
    if state != RUNNING:
        status = instance.actual_status or "created"
        if age is None:
            return Verdict(False, f"{status}, age unknown: left alone")
        if young:
            what = "starting" if state == PENDING else status
            return Verdict(False, f"{what} for {_ago(age)}, {grace}")
        return Verdict(True, f"{status} for {_ago(age)}: not running, so no supervisor looks after it")
    if probe is None:
        return Verdict(False, "running but not read over SSH (it appeared after the listing): left alone")
    if not probe.reached:
        if "permission denied" in probe.error.lower() or "authentication" in probe.error.lower():
            return Verdict(False, "SSH refused our key, so its heartbeat could not be judged: left alone "
                                  "(check -e ssh_key_file)")
        if young or age is None:
            return Verdict(False, f"SSH unreachable, but {grace if young else 'age unknown'}")
        return Verdict(True, f"SSH unreachable ({probe.error[:120] or 'no answer'}), up {_ago(age)}")
    updated = heartbeat_updated(probe.heartbeat)
    if updated is None:
        if young or age is None:
            return Verdict(False, f"no supervisor heartbeat yet, {grace if young else 'age unknown'}")
        return Verdict(True, f"no supervisor heartbeat (heartbeat.json missing or unreadable) after {_ago(age)}")
    beat_age = max(0.0, (probe.clock or now) - updated)  # on the instance's clock when we have it
    if beat_age > stale_after:
        return Verdict(True, f"heartbeat stale: last updated {_ago(beat_age)} ago (stale_after={_ago(stale_after)})")
    return Verdict(False, f"healthy: heartbeat {_ago(beat_age)} ago")
