"""Fixtures for the emulator's own tests: the real vastai CLI, isolated per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VASTAI = Path(sys.executable).parent / "vastai"


@pytest.fixture
def vastai(emulator, tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "VAST_URL": emulator.url,
        "VASTAI_NO_UPDATE_CHECK": "1",
        "VAST_API_KEY": emulator.api_key,  # the flag's default: keeps the key out of the process list
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(VASTAI), "--url", emulator.url, *args], env=env, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run
