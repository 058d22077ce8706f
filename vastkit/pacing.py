"""Pacing: Vast's rate limits kept on our side, so that the API does not have to refuse us.

Vast enforces a minimum interval per endpoint and identity (vast-api.md §7: create 4.5 s, show instance 2 s,
list instances 1 s, destroy 3 s, read env-vars 5 s, create env-var 3 s, search 10 per minute) and answers a
request inside it with a plain-text 429 and no `Retry-After`; a create inside its interval also blocks creates
for 12 s. A fleet's Ansible forks are separate processes with one key, so the state of each endpoint is a
small file (per API and key) under `~/.cache/vastkit/pacing/`, held with an exclusive lock from the wait until
the answer: creates of a fleet go out one after another, each `interval` after the previous one *ended*. The
server counts arrivals, which lie between send and answer, so that spacing holds whatever the latency.

A 429 that reaches us anyway (another client with the same key, the emulator's test harness) is recorded too:
the endpoint then waits its interval, and a create its penalty, before anyone of ours sends again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_POLL_S = (0.01, 0.2)  # first and longest sleep between tries for a busy endpoint's lock
LOCK_PATIENCE_S = 600.0  # a holder this slow is stuck (no request takes this long): go on without the lock


@dataclass(frozen=True)
class Limit:
    """One endpoint's limit: `interval` seconds between requests (plus `penalty` after a refused one), or
    `per_period` requests in any `period` seconds."""

    name: str
    interval: float = 0.0
    penalty: float = 0.0
    per_period: int = 0
    period: float = 0.0


LIMITS = {limit.name: limit for limit in (
    Limit("create_instance", interval=4.5, penalty=12.0),
    Limit("show_instance", interval=2.0),
    Limit("show_instances", interval=1.0),
    Limit("destroy_instance", interval=3.0),
    Limit("show_env_vars", interval=5.0),
    Limit("create_env_var", interval=3.0),
    Limit("search_offers", per_period=10, period=60.0),
)}
_ROUTES = tuple((frozenset(methods), re.compile(pattern), name) for methods, pattern, name in (
    (("PUT",), r"^/api/v0/asks/\d+/?$", "create_instance"),
    (("GET",), r"^/api/v0/instances/\d+/?$", "show_instance"),
    (("GET",), r"^/api/v[01]/instances/?$", "show_instances"),
    (("DELETE",), r"^/api/v0/instances/\d+/?$", "destroy_instance"),
    (("GET",), r"^/api/v0/secrets/?$", "show_env_vars"),
    (("POST",), r"^/api/v0/secrets/?$", "create_env_var"),
    (("POST", "GET"), r"^/api/v0/bundles/?$", "search_offers"),
    (("PUT",), r"^/api/v0/search/asks/?$", "search_offers"),
))


def endpoint_of(method: str, path: str) -> str | None:
    """The rate-limited endpoint a request goes to (`path` may carry a URL prefix and a query), or None."""
    path = path.split("?", 1)[0]
    start = path.find("/api/v")
    if start < 0:
        return None
    path = path[start:]
    for methods, pattern, name in _ROUTES:
        if method.upper() in methods and pattern.match(path):
            return name
    return None


@dataclass
class EndpointState:
    """What the next request of one endpoint must wait for: `next_at` (epoch s) and the recent answers' times."""

    next_at: float = 0.0
    recent: tuple[float, ...] = ()

    def wait(self, limit: Limit, scale: float, now: float) -> float:
        """Seconds until a request may be sent."""
        waits = [self.next_at - now]
        if limit.per_period and len(self.recent) >= limit.per_period:
            waits.append(self.recent[-limit.per_period] + limit.period * scale - now)
        return max(0.0, *waits)

    def after(self, limit: Limit, scale: float, ended: float, refused: bool) -> EndpointState:
        """The state once a request has ended at `ended` (`refused`: the API answered 429)."""
        next_at = ended + limit.interval * scale
        if refused:
            next_at = max(next_at, ended + (limit.penalty or limit.interval) * scale)
            if limit.per_period:  # refused inside the window: wait as if the window were full
                next_at = max(next_at, ended + limit.period * scale / limit.per_period)
        recent = self.recent
        if limit.per_period:
            recent = tuple(t for t in (*recent, ended) if t > ended - limit.period * scale)[-limit.per_period:]
        return EndpointState(max(next_at, self.next_at if refused else 0.0), recent)

    def to_json(self) -> str:
        return json.dumps({"next_at": self.next_at, "recent": list(self.recent)})

    @classmethod
    def from_json(cls, text: str) -> EndpointState:
        try:
            data = json.loads(text) if text.strip() else {}
            return cls(float(data.get("next_at", 0.0)), tuple(float(t) for t in data.get("recent", ())))
        except (ValueError, TypeError, AttributeError):
            return cls()  # a torn or foreign file: start over (at worst one request too early, answered 429)


class Slot:
    """One request's turn; the caller sets `refused` when the answer was a 429."""

    refused: bool = False


class Pacer:
    """Waits before each request of a rate-limited endpoint; one per API and key, shared by its processes.

    `directory` None keeps the state in this process only. `clock` is wall time (shared across processes).
    """

    def __init__(self, identity: str, *, scale: float = 1.0, directory: Path | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.scale = scale
        self.clock = clock
        self.sleep = sleep
        self._dir = Path(directory) / identity if directory is not None else None
        self._memory: dict[str, EndpointState] = {}
        self._memory_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()
        if self._dir is not None:
            try:
                self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                log.warning("cannot keep rate-limit pacing in %s (%s); pacing this process only", self._dir, exc)
                self._dir = None

    @property
    def enabled(self) -> bool:
        return self.scale > 0

    @property
    def directory(self) -> Path | None:
        return self._dir

    @contextlib.contextmanager
    def slot(self, name: str) -> Iterator[Slot]:
        """Wait until `name` may be called, hold it while the request runs, record when it ended."""
        limit = LIMITS.get(name)
        turn = Slot()
        if limit is None or not self.enabled:
            yield turn
            return
        with self.hold(name) as store:
            state = store.read()
            delay = state.wait(limit, self.scale, self.clock())
            if delay > 0:
                log.debug("pacing %s: %.2fs", name, delay)
                self.sleep(delay)
            try:
                yield turn
            finally:
                store.write(store.read().after(limit, self.scale, self.clock(), turn.refused))

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[_Store]:
        """The endpoint's lock without a request (e.g. to re-check a shared listing before fetching one).
        Re-entrant within a thread: a `slot` inside a `hold` of the same endpoint waits but does not lock again."""
        held: dict[str, _Store] = self._local.__dict__.setdefault("held", {})
        if name in held:
            yield held[name]
            return
        store = self._open(name)
        held[name] = store
        try:
            yield store
        finally:
            del held[name]
            store.close()

    def _open(self, name: str) -> _Store:
        if self._dir is None:
            with self._guard:
                lock = self._memory_locks.setdefault(name, threading.Lock())
            lock.acquire()
            return _MemoryStore(self._memory, name, lock)
        path = self._dir / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _lock(fd, name, self.sleep)
        return _FileStore(fd)


class _Store:
    def read(self) -> EndpointState:
        raise NotImplementedError

    def write(self, state: EndpointState) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _FileStore(_Store):
    def __init__(self, fd: int):
        self.fd = fd

    def read(self) -> EndpointState:
        os.lseek(self.fd, 0, os.SEEK_SET)
        return EndpointState.from_json(os.read(self.fd, 65536).decode(errors="replace"))

    def write(self, state: EndpointState) -> None:
        data = state.to_json().encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)
        os.ftruncate(self.fd, len(data))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class _MemoryStore(_Store):
    def __init__(self, states: dict, name: str, lock: threading.Lock):
        self.states, self.name, self.lock = states, name, lock

    def read(self) -> EndpointState:
        return self.states.get(self.name, EndpointState())

    def write(self, state: EndpointState) -> None:
        self.states[self.name] = state

    def close(self) -> None:
        self.lock.release()


def _lock(fd: int, name: str, sleep: Callable[[float], None]) -> None:
    """flock, polled (not blocking) so that a signal or a cancel check between tries can stop the wait."""
    delay, started = LOCK_POLL_S[0], time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() - started > LOCK_PATIENCE_S:
            log.warning("rate-limit pacing: %s stays locked; sending without waiting for it", name)
            return
        sleep(delay)
        delay = min(delay * 2, LOCK_POLL_S[1])


def threshold_seconds(text: str | None) -> float | None:
    """The `threshold=4.5` of Vast's plain-text 429 body, if it has one."""
    found = re.search(r"threshold=([0-9]+(?:\.[0-9]+)?)", text or "")
    return float(found.group(1)) if found else None
