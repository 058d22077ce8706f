"""Fault injection: what can go wrong on Vast.ai, on demand (see docs/emulator.md, "Faults").

A fault is a JSON object with a ``kind``. HTTP faults hit the next matching API requests; instance faults
hit an instance chosen by ``target``: ``"next_create"`` (an ordered queue: each create takes the next entry),
``{"instance_id": N}`` or ``{"label": "name"}``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

# Faults that act on a running instance after a delay (a timer, started when it is running).
TIMED_KINDS = ("status", "preempt", "restart", "sshd_dies", "disk_full", "disk_free")
INSTANCE_KINDS = ("stuck_loading", "ssh_refused", "ssh_eof", "direct_blocked", "null_fields", *TIMED_KINDS)
ALL_KINDS = ("http_error", "offer_gone", "slow_create", "none", *INSTANCE_KINDS)
# The flags instance faults leave on a record until they act (reset-faults drops them).
PENDING_FAULT_KEYS = ("stuck_loading", "ssh_refused_s", "status", "preempt", "restart", "sshd_dies", "disk_full", "disk_free",
                      "ssh_eof_s", "ssh_eof_until", "direct_blocked", "null_fields")
SLOW_CREATE_STATUSES = (502, 503, 504)
CALLERS = re.compile(r"^(account|instance|instance:\d+|none)$")
DEFAULT_GONE_FOR_S = 600.0
DEFAULT_429_BODY = "API requests too frequent endpoint threshold=1.0"


class FaultSpecError(ValueError):
    """A fault description that cannot be used; the message says which field and what is allowed."""


@dataclass
class Fault:
    kind: str
    target: Any = None  # None, "next_create", {"instance_id": N}, {"label": "x"}
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, **self.params}


@dataclass
class HttpFault:
    """A burst of error answers: the next ``remaining`` matching requests, or all of them until ``until``."""

    status: int
    remaining: int | None  # None: unlimited until ``until``
    retry_after: float | None = None
    path: str | None = None
    method: str | None = None
    body: str | None = None
    until: float | None = None  # epoch seconds
    caller: str | None = None  # "account", "instance" (any instance key), "instance:N", "none"

    def applies_to(self, method: str, path: str, caller: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.caller and caller != self.caller and not caller.startswith(self.caller + ":"):
            return False
        return not (self.path and self.path not in path)

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or (self.remaining is not None and self.remaining <= 0)


def _number(spec: dict[str, Any], key: str, default: Any = None, minimum: float = 0.0) -> Any:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise FaultSpecError(f"fault {spec.get('kind')!r}: {key} must be a number >= {minimum}, got {value!r}")
    return value


def _target(spec: dict[str, Any]) -> Any:
    target = spec.get("target")
    if target == "next_create":
        return target
    if isinstance(target, dict) and set(target) == {"instance_id"} and isinstance(target["instance_id"], int):
        return {"instance_id": target["instance_id"]}
    if isinstance(target, dict) and set(target) == {"label"} and isinstance(target["label"], str):
        return {"label": target["label"]}
    raise FaultSpecError(
        f"fault {spec.get('kind')!r}: target must be \"next_create\", {{\"instance_id\": N}} or {{\"label\": \"name\"}}, "
        f"got {target!r}"
    )


_ALLOWED_KEYS = {
    "http_error": {"status", "count", "for_s", "retry_after", "path", "method", "body", "caller"},
    "offer_gone": {"target", "offer_ids", "status", "gone_for_s"},
    "slow_create": {"target", "status", "hang_s", "list_after_s"},
    "ssh_eof": {"target", "seconds"},
    "direct_blocked": {"target"},
    "null_fields": {"target", "fields", "for_s"},
    "none": {"target"},
    "stuck_loading": {"target"},
    "ssh_refused": {"target", "seconds"},
    "status": {"target", "status", "after_s"},
    "preempt": {"target", "after_s", "at", "resume_after_s"},
    "restart": {"target", "after_s"},
    "sshd_dies": {"target", "after_s"},
    "disk_full": {"target", "after_s", "free_bytes", "for_s"},
    "disk_free": {"target"},
}


def parse_fault(spec: Any) -> Fault:
    """Validate one fault description; raise FaultSpecError naming the offending field."""
    if not isinstance(spec, dict):
        raise FaultSpecError(f"each fault must be a JSON object, got {spec!r}")
    kind = spec.get("kind")
    if kind not in ALL_KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; allowed: {', '.join(ALL_KINDS)}")
    unknown = set(spec) - {"kind"} - _ALLOWED_KEYS[kind]
    if unknown:
        raise FaultSpecError(
            f"fault {kind!r}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_ALLOWED_KEYS[kind]))}"
        )
    if kind == "http_error":
        return Fault(kind, None, _http_error_params(spec))
    if kind == "offer_gone":
        status = spec.get("status")
        if status not in (None, 404, 410):
            raise FaultSpecError(f"fault 'offer_gone': status must be 404 or 410, got {status!r}")
        params = {"gone_for_s": _number(spec, "gone_for_s", DEFAULT_GONE_FOR_S), "status": status}
        if "offer_ids" in spec:
            ids = spec["offer_ids"]
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or "target" in spec:
                raise FaultSpecError("fault 'offer_gone': give either offer_ids (a list of ints) or target")
            return Fault(kind, None, {**params, "offer_ids": ids})
        if spec.get("target") != "next_create":
            raise FaultSpecError("fault 'offer_gone': target must be \"next_create\" (or give offer_ids)")
        return Fault(kind, "next_create", params)
    if kind == "slow_create":
        if spec.get("target") != "next_create":
            raise FaultSpecError("fault 'slow_create': target must be \"next_create\"")
        status = spec.get("status", 504)
        if status not in SLOW_CREATE_STATUSES:
            raise FaultSpecError(f"fault 'slow_create': status must be one of 502, 503, 504, got {status!r}")
        return Fault(kind, "next_create", {"status": status, "hang_s": _number(spec, "hang_s", 0.0),
                                           "list_after_s": _number(spec, "list_after_s", 10.0)})
    target = _target(spec)
    if kind == "none":
        if target != "next_create":
            raise FaultSpecError("fault 'none' is a placeholder in the create queue: target must be \"next_create\"")
        return Fault(kind, target, {})
    if kind == "stuck_loading":
        return Fault(kind, target, {})
    if kind == "ssh_refused":
        return Fault(kind, target, {"seconds": _number(spec, "seconds", 5.0)})
    if kind == "ssh_eof":
        return Fault(kind, target, {"seconds": _number(spec, "seconds", 5.0)})
    if kind == "direct_blocked":
        return Fault(kind, target, {})
    if kind == "null_fields":
        names = spec.get("fields", ["start_date"])
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n != "id" for n in names):
            raise FaultSpecError(f"fault 'null_fields': fields must be a non-empty list of row field names (not id), "
                                 f"got {names!r}")
        return Fault(kind, target, {"fields": names, "for_s": _number(spec, "for_s")})
    if kind == "status":
        status = spec.get("status")
        if status not in ("exited", "offline"):
            raise FaultSpecError(f"fault 'status': status must be \"exited\" or \"offline\", got {status!r}")
        return Fault(kind, target, {"status": status, "after_s": _number(spec, "after_s", 0.0)})
    if kind in ("restart", "sshd_dies"):
        return Fault(kind, target, {"after_s": _number(spec, "after_s", 0.0)})
    if kind == "disk_full":
        free = spec.get("free_bytes", 0)
        if isinstance(free, bool) or not isinstance(free, int) or free < 0:
            raise FaultSpecError(f"fault 'disk_full': free_bytes must be an integer >= 0, got {free!r}")
        for_s = _number(spec, "for_s")
        if for_s is not None and for_s <= 0:
            raise FaultSpecError(f"fault 'disk_full': for_s must be a number > 0 (omit it to stay full), got {for_s!r}")
        return Fault(kind, target, {"after_s": _number(spec, "after_s", 0.0), "free_bytes": free, "for_s": for_s})
    if kind == "disk_free":
        return Fault(kind, target, {})
    # preempt
    if "at" in spec and "after_s" in spec:
        raise FaultSpecError("fault 'preempt': give at (epoch seconds) or after_s, not both")
    params = {"after_s": _number(spec, "after_s", 0.0), "at": _number(spec, "at")}
    return Fault(kind, target, {**params, "resume_after_s": _number(spec, "resume_after_s")})


def _http_error_params(spec: dict[str, Any]) -> dict[str, Any]:
    status = spec.get("status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultSpecError(f"fault 'http_error': status must be an HTTP error code 400-599, got {status!r}")
    if "count" in spec and "for_s" in spec:
        raise FaultSpecError("fault 'http_error': give count (requests) or for_s (seconds), not both")
    count = spec.get("count", 1)
    if "for_s" in spec:
        count = None
        for_s = _number(spec, "for_s")
        if for_s is None or for_s <= 0:
            raise FaultSpecError(f"fault 'http_error': for_s must be a number > 0, got {spec['for_s']!r}")
    elif not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultSpecError(f"fault 'http_error': count must be an integer >= 1, got {count!r}")
    caller = spec.get("caller")
    if caller is not None and not (isinstance(caller, str) and CALLERS.match(caller)):
        raise FaultSpecError(
            f"fault 'http_error': caller must be \"account\", \"instance\", \"instance:<id>\" or \"none\", got {caller!r}"
        )
    return {
        "status": status,
        "count": count,
        "for_s": spec.get("for_s"),
        "retry_after": _number(spec, "retry_after"),
        "path": spec.get("path"),
        "method": spec.get("method"),
        "body": spec.get("body"),
        "caller": caller,
    }


def parse_faults(payload: Any) -> list[Fault]:
    """Accept ``{"faults": [...]}``, a list, or one fault object."""
    if isinstance(payload, dict) and "faults" in payload:
        payload = payload["faults"]
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise FaultSpecError('faults must be a list of fault objects or {"faults": [...]}')
    return [parse_fault(item) for item in payload]


def instance_fault_state(fault: Fault) -> dict[str, Any]:
    """The per-instance flags a fault leaves on an instance record (persisted with it)."""
    if fault.kind == "stuck_loading":
        return {"stuck_loading": True}
    if fault.kind == "ssh_refused":
        return {"ssh_refused_s": fault.params["seconds"]}
    if fault.kind == "ssh_eof":
        return {"ssh_eof_s": fault.params["seconds"]}
    if fault.kind == "direct_blocked":
        return {"direct_blocked": True}
    if fault.kind == "null_fields":
        for_s = fault.params["for_s"]
        return {"null_fields": {"fields": list(fault.params["fields"]),
                                "until": time.time() + float(for_s) if for_s is not None else None}}
    if fault.kind == "status":
        return {"status": {"status": fault.params["status"], "after_s": fault.params["after_s"]}}
    if fault.kind == "preempt":
        return {"preempt": dict(fault.params)}
    if fault.kind in ("restart", "sshd_dies", "disk_full"):
        return {fault.kind: dict(fault.params)}
    if fault.kind == "disk_free":
        return {"disk_free": True}
    return {}


class FaultBook:
    """Pending faults not yet bound to an instance: HTTP bursts, the create queue, label-targeted faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: list[HttpFault] = []
        self._create_queue: deque[Fault] = deque()
        self._by_label: dict[str, list[Fault]] = {}

    def add_http(self, fault: Fault) -> None:
        p = fault.params
        until = time.time() + float(p["for_s"]) if p.get("for_s") is not None else None
        burst = HttpFault(p["status"], p["count"], p["retry_after"], p["path"], p["method"], p["body"], until, p["caller"])
        with self._lock:
            self._http.append(burst)

    def queue_for_create(self, fault: Fault) -> None:
        with self._lock:
            self._create_queue.append(fault)

    def hold_for_label(self, label: str, fault: Fault) -> None:
        with self._lock:
            self._by_label.setdefault(label, []).append(fault)

    def take_http(self, method: str, path: str, caller: str) -> HttpFault | None:
        """The burst this request falls into, if any (``caller`` as the request log names it)."""
        now = time.time()
        with self._lock:
            self._http = [f for f in self._http if not f.expired(now)]
            for fault in self._http:
                if fault.applies_to(method, path, caller):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._http.remove(fault)
                    return fault
        return None

    def take_create(self) -> Fault | None:
        with self._lock:
            return self._create_queue.popleft() if self._create_queue else None

    def take_label(self, label: str | None) -> list[Fault]:
        with self._lock:
            return self._by_label.pop(label, []) if label is not None else []

    def clear(self) -> None:
        with self._lock:
            self._http.clear()
            self._create_queue.clear()
            self._by_label.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "http": [asdict(f) for f in self._http],
                "create_queue": [f.to_json() for f in self._create_queue],
                "by_label": {k: [f.to_json() for f in v] for k, v in self._by_label.items()},
            }
