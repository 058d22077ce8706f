"""The environment of an instance, as a Vast container has it, and the create body's ``env`` dict.

Two environments, as on a Vast host in SSH launch mode:

- the *container* environment (account env-vars, create ``-e`` entries, ``CONTAINER_API_KEY``...) reaches
  PID 1 and onstart only;
- the *network* environment (the host's proxy, CA bundle, ``PIP_*``/``UV_*`` settings) is the machine's
  network: it reaches onstart and, through sshd's ``SetEnv``, SSH sessions too. It never holds Vast secrets.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .base_venv import TORCH_VERSION

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_PATH = "/venv/main/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host settings an instance needs to reach package indexes the way this machine does (its "network").
PASSTHROUGH = re.compile(r"^(https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY|SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|PIP_[A-Z_]+|UV_[A-Z_]+)$")


def network_environment() -> dict[str, str]:
    """The host's network settings (PASSTHROUGH names only): how an instance reaches package indexes."""
    # UV_CACHE_DIR stays out: inside, the cache is the bind at /root/.cache/uv.
    return {k: v for k, v in os.environ.items() if PASSTHROUGH.match(k) and k != "UV_CACHE_DIR"}


def container_env_entries(env: Any) -> dict[str, str]:
    """The real ``-e KEY=VALUE`` entries of a create body's env; docker flags (``-p 22:22``, ``-h``) are skipped."""
    if isinstance(env, str):
        entries: dict[str, str] = {}
        tokens = env.split()
        for i, token in enumerate(tokens[:-1]):
            if token == "-e" and "=" in tokens[i + 1]:
                key, value = tokens[i + 1].split("=", 1)
                entries[key] = value.strip("\"'")
        return entries
    if not isinstance(env, dict):
        return {}
    return {str(k): str(v) for k, v in env.items() if ENV_NAME.match(str(k))}


def instance_environment(
    *,
    instance_id: int,
    instance_api_key: str,
    ssh_port: int,
    ssh_public_key: str,
    gpu_count: int,
    account_env: dict[str, str],
    create_env: dict[str, str],
    api_url: str,
) -> dict[str, str]:
    """Network < image defaults < account env-vars < create ``-e`` entries < what Vast always sets.

    This is the container's environment: PID 1 and onstart see it, SSH sessions do not.
    """
    env = network_environment()
    env.update(
        {
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
            "DATA_DIRECTORY": "/workspace",
            "WORKSPACE": "/workspace",
            "PYTORCH_VERSION": TORCH_VERSION,
            "PYTORCH_BACKEND": "cpu",
        }
    )
    env.update(account_env)
    env.update(create_env)
    env.update(
        {
            "CONTAINER_ID": str(instance_id),
            "CONTAINER_API_KEY": instance_api_key,
            "VAST_CONTAINERLABEL": f"C.{instance_id}",
            "PUBLIC_IPADDR": "127.0.0.1",
            "VAST_TCP_PORT_22": str(ssh_port),
            "SSH_PUBLIC_KEY": ssh_public_key,
            "GPU_COUNT": str(gpu_count),
            # Emulator-only: real instances reach console.vast.ai by default; here the API is the emulator.
            "VAST_URL": api_url,
            "PATH": DEFAULT_PATH,
        }
    )
    return env
