"""The vast inventory fails loudly and briefly: non-zero, one line saying what to check, no other plugin's noise."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OTHER_PLUGINS = ("'ini' plugin", "'auto' plugin", "'host_list' plugin", "'script' plugin", "'toml' plugin")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graph(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"  # no key file saved by `vastai set api-key` here
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAST_", "ANSIBLE_"))}
    base.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
                ANSIBLE_NOCOLOR="1", **env)
    return subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", "inventory/vast.yml", "--graph"],
                          cwd=REPO, env=base, capture_output=True, text=True, timeout=150)


@pytest.mark.parametrize(("env", "says"), [
    ({"VAST_API_KEY": "k"}, "cannot reach the Vast API at http://127.0.0.1:{port} (ConnectionError"),
    ({}, "No Vast.ai API key: set VAST_API_KEY in the environment, or save it once with `vastai set api-key KEY`"),
], ids=["unreachable", "no-key"])
def test_an_unusable_api_fails_the_inventory_with_what_to_check(tmp_path, env, says):
    port = closed_port()
    done = graph(tmp_path, VAST_URL=f"http://127.0.0.1:{port}", **env)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert says.format(port=port) in out
    assert "check VAST_URL" in out or "vastai set api-key" in out
    assert "HTTP None" not in out and not any(name in out for name in OTHER_PLUGINS), out


def test_a_refused_key_says_which_variable_to_fix(tmp_path, emulator):
    done = graph(tmp_path, VAST_URL=emulator.url, VAST_API_KEY="not-the-key")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "refused the API key (HTTP 401); check VAST_API_KEY, or run vastai set api-key KEY" in out
