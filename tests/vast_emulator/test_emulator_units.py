"""The emulator's pure rules without a server: rate limits, image CUDA against the host's driver."""

from __future__ import annotations

import pytest

from vast_emulator import images
from vast_emulator.ratelimit import RateLimiter, limit_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_endpoint_has_vasts_interval_per_identity():
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    assert limiter.check("k", "GET", "/api/v0/instances/5/") is None
    assert limiter.check("k", "GET", "/api/v0/instances/6/") == "API requests too frequent endpoint threshold=2"
    assert limiter.check("other-key", "GET", "/api/v0/instances/5/") is None  # another identity
    assert limiter.check("k", "GET", "/api/v1/instances/") is None  # another endpoint
    assert limiter.check("k", "GET", "/api/v0/users/current") is None  # not limited
    clock.now += 2.0
    assert limiter.check("k", "GET", "/api/v0/instances/5/") is None


def test_a_create_inside_its_interval_is_penalised_for_12_s():
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    assert limiter.check("k", "PUT", "/api/v0/asks/1/") is None
    clock.now += 1.0
    assert limiter.check("k", "PUT", "/api/v0/asks/2/") == "API requests too frequent endpoint threshold=4.5"
    clock.now += 4.0  # 5 s after the first: past the interval, but inside the penalty
    assert limiter.check("k", "PUT", "/api/v0/asks/2/") is not None
    clock.now += 12.0
    assert limiter.check("k", "PUT", "/api/v0/asks/2/") is None


def test_search_allows_ten_a_minute_and_scale_shrinks_every_limit():
    clock = Clock()
    limiter = RateLimiter(0.1, clock=clock)
    assert [limiter.check("k", "POST", "/api/v0/bundles/") for _ in range(10)] == [None] * 10
    assert limiter.check("k", "PUT", "/api/v0/search/asks/") == "API requests too frequent"  # same endpoint
    clock.now += 6.0  # the minute, scaled
    assert limiter.check("k", "POST", "/api/v0/bundles/") is None
    assert limiter.check("k", "DELETE", "/api/v0/instances/3/") is None
    clock.now += 0.31
    assert limiter.check("k", "DELETE", "/api/v0/instances/3/") is None  # 3 s x 0.1
    limiter.set_scale(0)
    assert all(limiter.check("k", "PUT", "/api/v0/asks/1/") is None for _ in range(5))


def test_limits_cover_the_documented_endpoints():
    names = {m: limit_for(*m).name for m in [
        ("PUT", "/api/v0/asks/12/"), ("GET", "/api/v0/instances/1/"), ("GET", "/api/v1/instances/"),
        ("GET", "/api/v0/instances/"), ("DELETE", "/api/v0/instances/1/"), ("GET", "/api/v0/secrets/"),
        ("POST", "/api/v0/secrets/"), ("POST", "/api/v0/bundles/")]}
    assert sorted(set(names.values())) == ["create_env_var", "create_instance", "destroy_instance", "search_offers",
                                           "show_env_vars", "show_instance", "show_instances"]
    assert limit_for("PUT", "/api/v0/instances/1/") is None  # start/stop/label: no documented limit


@pytest.mark.parametrize("image, cuda, pulled, fails", [
    ("vastai/pytorch:@vastai-automatic-tag", 12.8, "vastai/pytorch:cuda-12.8.1-auto", False),
    ("vastai/pytorch:@vastai-automatic-tag", 13.1, "vastai/pytorch:cuda-13.1.1-auto", False),
    ("vastai/pytorch:@vastai-automatic-tag", 12.4, "vastai/pytorch:cuda-12.6.3-auto", True),  # older than any tag
    ("vastai/pytorch:cuda-13.0.2-auto", 12.8, "vastai/pytorch:cuda-13.0.2-auto", True),
    ("vastai/pytorch:cuda-12.6.3-auto", 12.8, "vastai/pytorch:cuda-12.6.3-auto", False),
    ("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", 12.2, "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", True),
    ("vastai/pytorch", 12.2, "vastai/pytorch", False),  # no CUDA in the tag: the emulator cannot tell
    ("localhost:5000/img", 12.2, "localhost:5000/img", False),
])
def test_an_image_runs_only_on_a_driver_that_supports_its_cuda(image, cuda, pulled, fails):
    resolved, error = images.resolve(image, cuda)
    assert resolved == pulled
    assert (error is not None) == fails
    if fails:
        assert "OCI runtime create failed" in error and "unsatisfied condition: cuda>=" in error
