"""Helpers for the control-plane tests: run the repo's ansible tools, read the emulator's request log."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
LABEL_PREFIX = "ctl-"
# Variables the control plane reads from the environment; tests give their own values (or none).
SCRUBBED = ("VAST_", "WANDB_", "B2_", "ANSIBLE_")


@dataclass
class Result:
    args: list
    rc: int
    out: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP as {host: {ok: n, changed: n, failed: n, ...}}."""
        hosts: dict[str, dict[str, int]] = {}
        lines = self.out.split("PLAY RECAP", 1)[-1].splitlines()[1:]
        for line in lines:
            if " : " not in line:
                continue
            host, counts = line.split(" : ", 1)
            hosts[host.strip()] = {k: int(v) for k, v in (p.split("=") for p in counts.split())}
        return hosts


@dataclass
class Ansible:
    """The repo's ansible commands with an environment pointing at one emulator."""

    env: dict
    common_vars: list = field(default_factory=list)

    def run(self, tool: str, *args: str, env: dict | None = None, unset: tuple = (), timeout: float = 240) -> Result:
        argv = [str(VENV_BIN / tool), *args]
        full_env = {k: v for k, v in {**self.env, **(env or {})}.items() if k not in unset}
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        return Result(argv, proc.returncode, proc.stdout, time.monotonic() - started)

    def playbook(self, playbook: str, *args: str, env: dict | None = None, unset: tuple = (),
                 timeout: float = 240) -> Result:
        return self.run("ansible-playbook", playbook, *self.common_vars, *args, env=env, unset=unset, timeout=timeout)

    def playbook_lines(self, playbook: str, *args: str, timeout: float = 240) -> tuple[int, list[tuple[float, str]]]:
        """Run a playbook and read its output as it comes: (rc, [(seconds since start, line), ...])."""
        argv = [str(VENV_BIN / "ansible-playbook"), playbook, *self.common_vars, *args]
        started = time.monotonic()
        lines: list[tuple[float, str]] = []
        with subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as proc:
            for line in proc.stdout:
                lines.append((time.monotonic() - started, line.rstrip("\n")))
                if time.monotonic() - started > timeout:
                    proc.kill()
            rc = proc.wait()
        return rc, lines


def base_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp / "cp"))
    return env


def instances(emulator, prefix: str = LABEL_PREFIX) -> list[dict]:
    return [row for row in emulator.state()["instances"] if (row.get("label") or "").startswith(prefix)]


def last_seq(emulator) -> int:
    entries = emulator.requests()
    return entries[-1]["seq"] if entries else 0


def writes_since(emulator, seq: int) -> list[dict]:
    """API requests that change something (a search is a POST but reads only; /_emulator/ is the test's own)."""
    return [r for r in emulator.requests(seq) if r["method"] != "GET" and not r["path"].startswith("/_emulator/")
            and not r["path"].startswith("/api/v0/bundles/")]


def creates_since(emulator, seq: int) -> list[dict]:
    return [r for r in emulator.requests(seq) if r["method"] == "PUT" and r["path"].startswith("/api/v0/asks/")]


def api_requests_since(emulator, seq: int) -> list[dict]:
    """What the code under test asked the API (the test's own /_emulator/ calls left out)."""
    return [r for r in emulator.requests(seq) if not r["path"].startswith("/_emulator/")]
