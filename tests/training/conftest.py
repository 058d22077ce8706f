"""Shared fixtures for training tests: a real S3 server (moto's server mode) on loopback.

`s3_server` runs `tools.s3server` (the same local bucket the demo and the e2e tests use) once per session;
`b2_env` gives each test a fresh bucket on it and the B2_* environment that points there, as
`training.store.bucket.ObjectStore.from_env` expects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tools.s3server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server(bucket="training-tests", key_id="test-key-id-0123",
                           app_key="test-app-key-secret-4567") as server:
        yield server


@pytest.fixture
def b2_env(s3_server: S3Server) -> dict[str, str]:
    """B2_* environment for a fresh, empty bucket on the session's moto server."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return s3_server.b2_env(bucket)
