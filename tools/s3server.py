"""A local stand-in for the B2 bucket: moto's S3 server on 127.0.0.1, for the demo, the e2e tests and benchmarks.

    with running_s3_server(bucket="demo") as s3:
        env = s3.b2_env()        # B2_KEY_ID, B2_APP_KEY, B2_S3_ENDPOINT, B2_S3_REGION, B2_BUCKET

Run it by hand with `python -m tools.s3server` (prints the B2_* variables; Ctrl-C stops it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

REGION = "us-west-004"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    # moto accepts any credentials; these are sentinels that tests look for where secrets must not be.
    key_id: str = field(default="local-key-id", repr=False)
    app_key: str = field(default="local-app-key", repr=False)
    region: str = REGION

    def b2_env(self, bucket: str | None = None) -> dict[str, str]:
        return {
            "B2_KEY_ID": self.key_id, "B2_APP_KEY": self.app_key, "B2_S3_ENDPOINT": self.endpoint,
            "B2_S3_REGION": self.region, "B2_BUCKET": bucket or self.bucket,
        }

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id=self.key_id,
            aws_secret_access_key=self.app_key, config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str, bucket: str | None = None) -> bytes:
        return self.client().get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_s3_server(bucket: str = "universal-simulator", *, start_timeout: float = 30.0,
                      key_id: str = "local-key-id", app_key: str = "local-app-key") -> Iterator[S3Server]:
    """moto in server mode on a free loopback port with `bucket` created; stopped on exit, whatever happens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "B2_"))}
    process = None
    for _attempt in range(3):  # the port may be taken between picking and binding it
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if _serving(endpoint, process, time.monotonic() + start_timeout):
            break
        stop_process(process)
    else:
        raise RuntimeError(f"moto S3 server did not start on 127.0.0.1 within {start_timeout:.0f}s")
    try:
        server = S3Server(endpoint=endpoint, bucket=bucket, key_id=key_id, app_key=app_key)
        server.create_bucket(bucket)
        yield server
    finally:
        stop_process(process)


def _serving(url: str, process: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a helper server, killing it if it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def main() -> int:
    with running_s3_server() as s3:
        for name, value in s3.b2_env().items():
            print(f"export {name}={value}")
        print("# serving; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
