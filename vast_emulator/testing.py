"""Run an emulator as a subprocess from tests or tools: ``with running_emulator(dir) as emu: ...``.

The handle speaks to the emulator over HTTP only, like every other client does.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .base_venv import ensure_base_venv
from .runtime import INSTANCE_MARKER_VAR, descendants

# The rate-limit scale test emulators run at unless told otherwise: Vast's intervals x 0.1 (create 0.45 s,
# its penalty 1.2 s, show 0.2 s, search 10 per 6 s), so a suite that creates hundreds of instances stays fast
# while every client still meets real 429s. Clients are told the same scale via VASTKIT_PACING_SCALE.
TEST_RATE_LIMIT_SCALE = 0.1
_THRESHOLD = re.compile(r"threshold=([0-9.]+)")
_CREATE_PATH = re.compile(r"/api/v0/asks/\d+/?$")
CREATE_PENALTY_S = 12.0
SEARCH_PERIOD_S = 6.0  # 60 s / 10 searches


class EmulatorError(RuntimeError):
    pass


def stray_processes(state_dir: Path) -> list[int]:
    """Pids of processes started for instances of the emulator using ``state_dir`` (should be none once stopped)."""
    marker = f"{INSTANCE_MARKER_VAR}={Path(state_dir).resolve()}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def leftover_mounts(state_dir: Path) -> list[str]:
    """Mounts on this host that mention ``state_dir`` (instance mounts are private, so there should be none)."""
    needle = str(Path(state_dir).resolve())
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if needle in line]


def leftover_loop_devices(state_dir: Path) -> list[str]:
    """Loop devices backed by a file under ``state_dir`` (instance disks; none once their instances are gone)."""
    needle = str(Path(state_dir).resolve()) + "/"
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(needle):
                found.append(backing.parent.parent.name)
        except OSError:
            continue
    return found


@dataclass
class EmulatorHandle:
    url: str
    api_key: str
    state_dir: Path
    process: subprocess.Popen
    log_path: Path
    http: requests.Session = field(default_factory=requests.Session)
    rate_limit_scale: float = TEST_RATE_LIMIT_SCALE

    def api(self, method: str, path: str, *, key: str | None = None, wait_rate_limit: bool = True,
            **kwargs: Any) -> requests.Response:
        """One request to the emulator with the account key (or ``key``); ``path`` starts with /api/... or /_emulator/.

        The emulator's rate limits apply to the harness too (it is the same identity as the client under test);
        a 429 is waited out and the request sent again, unless ``wait_rate_limit=False``.
        """
        headers = {"Authorization": f"Bearer {key or self.api_key}", **kwargs.pop("headers", {})}
        if method.upper() != "GET" and "json" not in kwargs and "data" not in kwargs:
            kwargs["json"] = {}
        deadline = time.monotonic() + 120
        while True:
            response = self.http.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
            if response.status_code != 429 or not wait_rate_limit or time.monotonic() > deadline:
                return response
            time.sleep(self._rate_limit_wait(path, response.text))

    def _rate_limit_wait(self, path: str, body: str) -> float:
        """How long a 429 asks for: past a create's penalty (a retry inside it is penalised again)."""
        scale = self.rate_limit_scale or 0.1
        if _CREATE_PATH.search(path.split("?", 1)[0]):
            return CREATE_PENALTY_S * scale * 1.05
        found = _THRESHOLD.search(body)
        return float(found.group(1)) * 1.05 if found else SEARCH_PERIOD_S * scale

    def settings(self, **changes: Any) -> dict[str, Any]:
        """The emulator's live settings (rate_limit_scale, strict_env_values); keyword arguments change them."""
        if changes:
            if "rate_limit_scale" in changes:
                self.rate_limit_scale = float(changes["rate_limit_scale"])
            return self._ok(self.api("POST", "/_emulator/settings", json=changes))["settings"]
        return self._ok(self.api("GET", "/_emulator/settings"))["settings"]

    def secrets(self) -> dict[str, str]:
        """The account env-vars in clear (GET /api/v0/secrets/ masks every value, as Vast does)."""
        return self._ok(self.api("GET", "/_emulator/secrets"))["secrets"]

    def team_key(self) -> str:
        """A new key of this account flagged as a team key (POST /api/v0/ssh/ refuses it)."""
        return self._ok(self.api("POST", "/_emulator/api-keys", json={"team": True}))["api_key"]

    def _ok(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            raise EmulatorError(f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    def set_faults(self, faults: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        return self._ok(self.api("POST", "/_emulator/faults", json={"faults": faults if isinstance(faults, list) else [faults]}))

    def reset_faults(self) -> None:
        self._ok(self.api("POST", "/_emulator/reset-faults"))

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self._ok(self.api("GET", f"/_emulator/requests?since={since}"))["requests"]

    def state(self) -> dict[str, Any]:
        return self._ok(self.api("GET", "/_emulator/state"))

    def register_ssh_key(self, public_key: str) -> int:
        return self._ok(self.api("POST", "/api/v0/ssh/", json={"ssh_key": public_key.strip()}))["key"]["id"]

    def search(self, query: dict[str, Any] | None = None, **extra: Any) -> list[dict[str, Any]]:
        body = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}, **(query or {}), **extra}
        body.setdefault("order", [["dph_total", "asc"]])
        return self._ok(self.api("POST", "/api/v0/bundles/", json=body))["offers"]

    def launch(self, gpu_name: str = "RTX 4090", **body: Any) -> int:
        """Create an instance on the cheapest available offer of ``gpu_name``; returns its id."""
        create = {"image": "vastai/pytorch", "disk": 16.0, "runtype": "ssh_direc ssh_proxy", **body}
        for offer in self.search({"gpu_name": {"eq": gpu_name}, "num_gpus": {"eq": "1"}}):
            response = self.api("PUT", f"/api/v0/asks/{offer['id']}/", json=create)
            if response.status_code in (404, 410) and "no_such_ask" in response.text:
                continue  # someone rented it between search and create: take the next one, as clients must
            return self._ok(response)["new_contract"]
        raise EmulatorError(f"no available offer of {gpu_name}")

    def instance(self, instance_id: int) -> dict[str, Any] | None:
        return self._ok(self.api("GET", f"/api/v0/instances/{instance_id}/?owner=me"))["instances"]

    def wait_status(self, instance_id: int, status: str = "running", timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = self.instance(instance_id)
            if row and row["actual_status"] == status:
                return row
            time.sleep(max(0.1, 2.0 * self.rate_limit_scale))  # show_instance's interval
        raise EmulatorError(f"instance {instance_id} not {status} after {timeout}s: {row and row['actual_status']}")

    def instance_pids(self, instance_id: int) -> list[int]:
        """Host pids of every process of a running instance, its init first ([] when none run)."""
        for entry in self.state()["instances"]:
            if entry["id"] == instance_id and entry["_emulator"]["runtime_pid"]:
                return descendants(entry["_emulator"]["runtime_pid"])
        return []

    def instance_root(self, instance_id: int) -> Path:
        """The instance's own view of its filesystem (``/proc/<init>/root``), e.g. to read its /workspace."""
        pids = self.instance_pids(instance_id)
        if not pids:
            raise EmulatorError(f"instance {instance_id} has no processes")
        return Path(f"/proc/{pids[0]}/root")

    def destroy(self, instance_id: int) -> None:
        self._ok(self.api("DELETE", f"/api/v0/instances/{instance_id}/"))

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM the emulator and wait; returns stray instance processes (should be [])."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise EmulatorError(f"emulator did not stop within {timeout}s (see {self.log_path})") from None
        self.http.close()
        return stray_processes(self.state_dir)


def start_emulator(
    state_dir: Path,
    *,
    loading_delay: float = 0.3,
    api_key: str | None = None,
    faults_file: Path | None = None,
    offers_file: Path | None = None,
    rate_limit_scale: float = TEST_RATE_LIMIT_SCALE,
    strict_env_values: bool = False,
    extra_args: tuple[str, ...] = (),
    startup_timeout: float = 30.0,
) -> EmulatorHandle:
    """Start ``python -m vast_emulator`` on a free port and wait until it answers."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    url_file = state_dir / "url"
    url_file.unlink(missing_ok=True)
    key = api_key or secrets.token_hex(32)
    args = [sys.executable, "-m", "vast_emulator", "--port", "0", "--state-dir", str(state_dir)]
    args += ["--loading-delay", str(loading_delay), "--rate-limit-scale", str(rate_limit_scale), *extra_args]
    if strict_env_values:
        args.append("--strict-env-values")
    if faults_file:
        args += ["--faults", str(faults_file)]
    if offers_file:
        args += ["--offers", str(offers_file)]
    env = {**os.environ, "VAST_EMULATOR_API_KEY": key}
    log_path = state_dir / "emulator.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(f"emulator exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        url = url_file.read_text().strip() if url_file.exists() else ""
        if url:  # the file may exist, still empty, while the emulator writes it
            try:
                if requests.get(url + "/api/v0/gpu_names/unique/", timeout=5).status_code == 200:
                    return EmulatorHandle(url, key, state_dir, process, log_path,
                                          rate_limit_scale=rate_limit_scale)
            except requests.ConnectionError:
                pass
        time.sleep(0.05)
    process.kill()
    raise EmulatorError(f"emulator not ready after {startup_timeout}s: {log_path.read_text()[-2000:]}")


@contextmanager
def running_emulator(state_dir: Path, **kwargs: Any) -> Iterator[EmulatorHandle]:
    """Start an emulator (see start_emulator), yield its handle, stop it and check nothing was left behind."""
    ensure_base_venv()  # once per machine; instant afterwards
    handle = start_emulator(state_dir, **kwargs)
    try:
        yield handle
    finally:
        strays = handle.stop()
        if strays:
            raise EmulatorError(f"emulator left instance processes running: {strays}")
        loops = leftover_loop_devices(handle.state_dir)
        if loops:
            raise EmulatorError(f"emulator left instance disks attached to loop devices: {loops}")


@dataclass(frozen=True)
class SshKeyPair:
    private_key: Path
    public_key: str


def make_ssh_keypair(directory: Path) -> SshKeyPair:
    """A fresh ed25519 keypair (no passphrase) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vast-emulator-tests", "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return SshKeyPair(path, Path(f"{path}.pub").read_text().strip())


def connect_ssh(row: dict[str, Any], private_key: Path, timeout: float = 15.0):
    """A connected paramiko SSHClient for an instance row (retries until the port accepts or time runs out)."""
    import paramiko

    if row.get("ports"):  # direct: public_ipaddr + ports["22/tcp"]; else Vast's proxy, ssh_host:ssh_port
        host, port = row["public_ipaddr"], int(row["ports"]["22/tcp"][0]["HostPort"])
    else:
        host, port = row["ssh_host"], int(row["ssh_port"])
    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                host, port=port, username="root", key_filename=str(private_key),
                look_for_keys=False, allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5,
            )
            return client
        except (OSError, EOFError, paramiko.SSHException):  # EOFError: a banner, then the connection closed
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ssh_run(client, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run ``command`` over an open paramiko client; returns (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err
