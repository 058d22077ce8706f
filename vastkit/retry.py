"""Bounded, jittered retries and deadlines: the only places vastkit waits."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from vastkit.errors import VastAPIError

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff, honouring a `Retry-After` up to `max_retry_after`.

    The docs quote per-endpoint rate-limit thresholds of 1 to 4.5 s, so the base delay is a second, not the
    0.15 s the vastai client starts with.
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds before attempt `attempt + 1`, or None when the caller should give up."""
        if attempt + 1 >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, TypeError, ValueError):
        return None


def is_transient(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether a failed call may be sent again.

    A non-idempotent call (create) is retried only where the server certainly did nothing: a 429, or a
    connection that was refused before the request went out. A 502 after a create may still have rented a
    machine; the caller checks by label instead of sending it twice.
    """
    if isinstance(exc, VastAPIError):
        if exc.error == "search_quota_exceeded":
            return False
        return exc.status == 429 or (idempotent and exc.status in RETRYABLE_STATUS)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        return idempotent or "refused" in str(exc).lower()
    if isinstance(exc, requests.exceptions.Timeout):
        return idempotent
    return False


class Deadline:
    """A monotonic deadline for waits: `while not d.expired: ...; d.sleep(poll)`."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.seconds = seconds
        self.end = clock() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self.end - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining <= 0

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, never past the deadline."""
        time.sleep(min(seconds, self.remaining))
