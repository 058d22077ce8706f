"""RetryPolicy and Deadline are pure: tested directly."""

import requests

from vastkit.errors import VastAPIError
from vastkit.retry import Deadline, RetryPolicy, is_transient


def test_backoff_is_jittered_bounded_and_gives_up():
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0)
    delays = [policy.delay(a) for a in range(4)]
    assert delays[-1] is None, "the last attempt must not schedule another"
    caps = [1.0, 2.0, 3.0]
    assert all(0 <= d <= cap for d, cap in zip(delays[:3], caps, strict=True))
    samples = {round(policy.delay(2), 6) for _ in range(20)}
    assert len(samples) > 1, "full jitter: delays vary between calls"


def test_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(attempts=3, max_retry_after=60)
    assert policy.delay(0, retry_after=7.0) == 7.0
    assert policy.delay(0, retry_after=120.0) is None, "a Retry-After past the cap means give up, as vastai does"


def test_create_is_retried_only_where_the_server_did_nothing():
    too_many = VastAPIError(429, None, "API requests too frequent")
    bad_gateway = VastAPIError(502, None, "bad gateway")
    quota = VastAPIError(429, "search_quota_exceeded", "Daily search quota exceeded")
    assert is_transient(too_many, idempotent=False)
    assert not is_transient(bad_gateway, idempotent=False)
    assert is_transient(bad_gateway, idempotent=True)
    assert not is_transient(quota, idempotent=True)
    assert not is_transient(VastAPIError(404, "no_such_instance", "x"), idempotent=True)
    refused = requests.exceptions.ConnectionError("Connection refused")
    reset = requests.exceptions.ConnectionError("Connection reset by peer")
    assert is_transient(refused, idempotent=False)
    assert not is_transient(reset, idempotent=False)
    assert is_transient(reset, idempotent=True)


def test_deadline_counts_down_with_its_clock():
    now = [100.0]
    deadline = Deadline(5.0, clock=lambda: now[0])
    assert deadline.remaining == 5.0 and not deadline.expired
    now[0] = 106.0
    assert deadline.remaining == 0.0 and deadline.expired
