"""Shared fixtures for training tests: a real S3 server (moto's server mode) on loopback.

`s3_server` starts `python -m moto.server` once per session on a free 127.0.0.1 port and yields its
URL; `b2_env` gives each test a fresh bucket on it and the B2_* environment that points there, as
`training.storage.ObjectStore.from_env` expects. Copy this pattern for other S3-using tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

MOTO_START_TIMEOUT_S = 30.0
TEST_REGION = "us-west-004"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answered: serving
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """URL (http://127.0.0.1:PORT) of a moto S3 server running for the whole session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "B2_"))}
    for _attempt in range(3):  # the port picked may be taken by the time moto binds it
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if _wait_until_serving(url, process, time.monotonic() + MOTO_START_TIMEOUT_S):
            break
        process.kill()
        process.wait(timeout=10)
    else:
        pytest.fail("moto server did not start on 127.0.0.1 within the deadline")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def make_b2_env(endpoint: str, bucket: str) -> dict[str, str]:
    """B2_* variables for a test bucket on `endpoint` (moto accepts any credentials)."""
    return {
        "B2_KEY_ID": "test-key-id-0123",
        "B2_APP_KEY": "test-app-key-secret-4567",
        "B2_S3_ENDPOINT": endpoint,
        "B2_S3_REGION": TEST_REGION,
        "B2_BUCKET": bucket,
    }


def create_bucket(env: dict[str, str]) -> None:
    client = boto3.client(
        "s3", endpoint_url=env["B2_S3_ENDPOINT"], region_name=env["B2_S3_REGION"],
        aws_access_key_id=env["B2_KEY_ID"], aws_secret_access_key=env["B2_APP_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(
        Bucket=env["B2_BUCKET"], CreateBucketConfiguration={"LocationConstraint": env["B2_S3_REGION"]}
    )


@pytest.fixture
def b2_env(s3_server: str) -> dict[str, str]:
    """B2_* environment for a fresh, empty bucket on the session's moto server."""
    env = make_b2_env(s3_server, f"test-{uuid.uuid4().hex[:12]}")
    create_bucket(env)
    return env
