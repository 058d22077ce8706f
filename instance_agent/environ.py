"""The container's environment, wherever on the instance we run.

On Vast (SSH launch mode) the container's environment — account env-vars (B2_*, WANDB_*), CONTAINER_ID,
CONTAINER_API_KEY, the create-time env — reaches the onstart script and PID 1 only, not SSH sessions. The
agent has it (onstart started it); a tool started over SSH (the data role's fetch, teardown's sync) reads it
from PID 1, which root may do. Nothing is copied to a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PID1_ENVIRON = Path("/proc/1/environ")


def read_environ(path: Path = PID1_ENVIRON) -> dict[str, str]:
    """A process's environment from its `/proc/<pid>/environ` (empty when unreadable)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    env = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def container_environ(own: Mapping[str, str] | None = None, *, pid1: Path = PID1_ENVIRON) -> dict[str, str]:
    """PID 1's environment under ours: what this process was given explicitly wins, the container fills in."""
    env = read_environ(pid1)
    env.update(os.environ if own is None else own)
    return env
