"""Vast's rate limits: a minimum interval per endpoint and identity, answered with a plain-text 429.

From the API reference (rate-limits-and-errors.mdx and the ``x-rate-limit`` of each endpoint, vast-api.md §7):
the identity is the caller's key (here: the key string, however it was sent); each endpoint below accepts one
request per ``interval`` seconds from one identity, search a number per minute. A create inside its interval
is also penalised: that identity's creates are refused for ``penalty`` seconds from then on. There is no
``Retry-After`` header; the body is ``API requests too frequent endpoint threshold=4.5`` (or, for the
per-minute limit, ``API requests too frequent``).

What Vast does not document, the emulator decides the stricter way where that cannot lock a client out:
a refused request (other than a create) does not restart the interval; every page of a listing is a request.

``scale`` multiplies every interval, penalty and period (0 turns the limits off): the test suite runs at 0.1
so that it stays fast, and the fleet benchmark and a few tests at 1, Vast's own values.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass

TOO_FREQUENT = "API requests too frequent"


@dataclass(frozen=True)
class Limit:
    """One endpoint's limit: a minimum ``interval`` (plus a ``penalty``), or ``per_period`` calls per ``period``."""

    name: str
    interval: float = 0.0
    penalty: float = 0.0
    per_period: int = 0
    period: float = 0.0


CREATE = Limit("create_instance", interval=4.5, penalty=12.0)
SEARCH = Limit("search_offers", per_period=10, period=60.0)
# (methods, path, limit); the path is the one the route table sees (no prefix, no query).
LIMITS: tuple[tuple[frozenset[str], re.Pattern[str], Limit], ...] = tuple(
    (frozenset(methods), re.compile(pattern), limit)
    for methods, pattern, limit in (
        (("PUT",), r"^/api/v0/asks/\d+/?$", CREATE),
        (("GET",), r"^/api/v0/instances/\d+/?$", Limit("show_instance", interval=2.0)),
        (("GET",), r"^/api/v[01]/instances/?$", Limit("show_instances", interval=1.0)),
        (("DELETE",), r"^/api/v0/instances/\d+/?$", Limit("destroy_instance", interval=3.0)),
        (("GET",), r"^/api/v0/secrets/?$", Limit("show_env_vars", interval=5.0)),
        (("POST",), r"^/api/v0/secrets/?$", Limit("create_env_var", interval=3.0)),
        (("POST", "GET"), r"^/api/v0/bundles/?$", SEARCH),
        (("PUT",), r"^/api/v0/search/asks/?$", SEARCH),
    )
)


def limit_for(method: str, path: str) -> Limit | None:
    for methods, pattern, limit in LIMITS:
        if method in methods and pattern.match(path):
            return limit
    return None


class RateLimiter:
    """Per (identity, endpoint) state; ``check`` says whether a request may pass (and records it)."""

    def __init__(self, scale: float = 1.0, clock=time.monotonic) -> None:
        if scale < 0:
            raise ValueError(f"rate limit scale must be >= 0, got {scale}")
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        self._next_ok: dict[tuple[str, str], float] = {}
        self._recent: dict[tuple[str, str], deque[float]] = {}

    def set_scale(self, scale: float) -> None:
        if scale < 0:
            raise ValueError(f"rate limit scale must be >= 0, got {scale}")
        with self._lock:
            self.scale = scale
            self._next_ok.clear()
            self._recent.clear()

    def check(self, identity: str, method: str, path: str) -> str | None:
        """None when the request may pass; else the 429 body (plain text). A passing request is counted."""
        limit = limit_for(method, path)
        if limit is None or self.scale == 0:
            return None
        key = (identity, limit.name)
        now = self._clock()
        with self._lock:
            if limit.per_period:
                recent = self._recent.setdefault(key, deque())
                while recent and recent[0] <= now - limit.period * self.scale:
                    recent.popleft()
                if len(recent) >= limit.per_period:
                    return TOO_FREQUENT
                recent.append(now)
                return None
            next_ok = self._next_ok.get(key, 0.0)
            if now >= next_ok:
                self._next_ok[key] = now + limit.interval * self.scale
                return None
            if limit.penalty:
                self._next_ok[key] = max(next_ok, now + limit.penalty * self.scale)
            return f"{TOO_FREQUENT} endpoint threshold={limit.interval * self.scale:g}"
