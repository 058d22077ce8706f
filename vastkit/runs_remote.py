"""A live run's files, read over SSH: heartbeat.json, status.json, the instance's clock, a log's tail.

Host keys are checked as the playbooks check them: one known_hosts file per instance id under the launch's
`known_hosts_dir` (Vast reuses proxy host:port pairs, so one shared file would cry "host key changed"), a new
machine's key accepted once and recorded there (OpenSSH's `accept-new`), a changed one refused. One shell
call per read: each SSH round trip over Vast's proxy costs about a second.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

import run_contract as contract
from vastkit.planning import LAUNCH_OPTIONS
from vastkit.records import Instance
from vastkit.waiting import SSH_NOT_READY

MAX_CHUNK = 256 * 1024  # bytes of a followed log per poll: a burst of output is caught up over a few polls


@dataclass(frozen=True)
class SshSettings:
    """The launch key and the per-instance known_hosts dir (launch.yml: ssh_key_file, known_hosts_dir)."""

    key_file: Path = field(default_factory=lambda: Path(LAUNCH_OPTIONS["ssh_key_file"].default).expanduser())
    known_hosts_dir: Path = field(
        default_factory=lambda: Path(LAUNCH_OPTIONS["known_hosts_dir"].default).expanduser()
    )
    timeout: float = 10.0

    def known_hosts(self, instance_id: int) -> Path:
        return self.known_hosts_dir / str(instance_id)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: an unknown host's key is recorded; a changed one is refused
    (paramiko raises BadHostKeyException before asking us)."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        client.save_host_keys(str(self.path))


def connect(instance: Instance, ssh: SshSettings) -> paramiko.SSHClient:
    """A logged-in client on the first of the instance's SSH addresses that answers (direct, then proxy)."""
    if not ssh.key_file.is_file():
        raise FileNotFoundError(
            f"SSH key {ssh.key_file} does not exist: name the launch key with --ssh-key PATH"
        )
    addresses = instance.ssh_addresses()
    if not addresses:
        raise OSError(f"instance {instance.id} shows no SSH address yet")
    ssh.known_hosts_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    known = ssh.known_hosts(instance.id)
    known.touch(mode=0o600, exist_ok=True)
    error: BaseException | None = None
    for host, port in addresses:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known))
        client.set_missing_host_key_policy(_AcceptNew(known))
        try:
            client.connect(
                host,
                port=port,
                username="root",
                key_filename=str(ssh.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=ssh.timeout,
                banner_timeout=ssh.timeout,
                auth_timeout=ssh.timeout,
            )
            return client
        except (paramiko.AuthenticationException, paramiko.BadHostKeyException):
            client.close()
            raise  # the other address has the same sshd, keys and host key
        except SSH_NOT_READY as exc:
            client.close()
            error = exc
    raise error


def describe_error(exc: BaseException) -> str:
    """One line a person can act on."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"host key changed for {exc.hostname}: refused (a reused address, or someone in between); "
            "if the instance was recreated, delete its file under the known_hosts directory"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return "SSH refused the key: give the launch key with --ssh-key PATH"
    return f"{type(exc).__name__}: {exc}"[:200]


@dataclass(frozen=True)
class LiveRead:
    """What one SSH read found. `reached` False: `error` says why; the rest is then empty."""

    reached: bool
    error: str = ""
    clock: float | None = None  # the instance's clock (heartbeat ages are measured on it)
    heartbeat: dict | None = None
    status: dict | None = None
    gpu_util: str | None = None
    log: str | None = None  # the log read, relative to the code dir
    log_size: int | None = None
    log_text: str = ""


def read_run(
    instance: Instance,
    ssh: SshSettings,
    *,
    log_lines: int = 0,
    log: str | None = None,
    log_offset: int | None = None,
    gpu: bool = False,
    client: paramiko.SSHClient | None = None,
) -> LiveRead:
    """Read the run's files in one SSH call. The log is `log` (relative to the code dir) or the newest
    logs/*.log; `log_lines` reads its last lines, `log_offset` the bytes from there on (following)."""
    own = client is None
    try:
        client = client or connect(instance, ssh)
        token = secrets.token_hex(6)
        _, stdout, _ = client.exec_command(
            _script(token, log_lines=log_lines, log=log, log_offset=log_offset, gpu=gpu),
            timeout=ssh.timeout * 3,
        )
        output = stdout.read().decode("utf-8", "replace")
    except (*SSH_NOT_READY, FileNotFoundError) as exc:
        return LiveRead(reached=False, error=describe_error(exc))
    finally:
        if own and client is not None:
            client.close()
    sections = _sections(output, token)
    clock = sections.get("clock", "").strip()
    size = sections.get("size", "").strip()
    return LiveRead(
        reached=True,
        clock=float(clock) if clock.isdigit() else None,
        heartbeat=_json(sections.get("heartbeat")),
        status=_json(sections.get("status")),
        gpu_util=sections.get("gpu", "").strip().replace("\n", "/") or None,
        log=sections.get("log", "").strip() or None,
        log_size=int(size) if size.isdigit() else None,
        log_text=sections.get("data", ""),
    )


def _script(token: str, *, log_lines: int, log: str | None, log_offset: int | None, gpu: bool) -> str:
    mark = f"@@{token}@@"
    newest = f"$(ls -t {contract.LOGS_DIR}/*.log 2>/dev/null | head -n 1)"
    parts = [
        f"cd {shlex.quote(contract.CODE_DIR)} 2>/dev/null",
        f"echo {mark}clock; date +%s",
        f"echo {mark}heartbeat; cat {contract.HEARTBEAT_FILE} 2>/dev/null; echo",
        f"echo {mark}status; cat {contract.STATUS_FILE} 2>/dev/null; echo",
    ]
    if gpu:
        parts.append(
            f"echo {mark}gpu; nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits "
            "2>/dev/null"
        )
    parts += [
        f"log={shlex.quote(log) if log else newest}",
        f'echo {mark}log; echo "$log"',
        f'echo {mark}size; [ -f "$log" ] && stat -c %s -- "$log"',
        f"echo {mark}data",
    ]
    if log_lines > 0:
        parts.append(f'[ -f "$log" ] && tail -n {int(log_lines)} -- "$log"')
    elif log_offset is not None:
        parts.append(f'[ -f "$log" ] && tail -c +{int(log_offset) + 1} -- "$log" | head -c {MAX_CHUNK}')
    return "\n".join(parts) + "\ntrue\n"


def _sections(output: str, token: str) -> dict[str, str]:
    """Split on the marker lines; `data` (a log, anything in it) is the last section, taken whole."""
    mark = f"@@{token}@@"
    found: dict[str, str] = {}
    head, _, data = output.partition(f"{mark}data\n")
    found["data"] = data
    for chunk in head.split(mark)[1:]:
        name, _, body = chunk.partition("\n")
        found[name.strip()] = body
    return found


def _json(text: str | None) -> dict | None:
    try:
        value = json.loads(text) if text and text.strip() else None
    except ValueError:
        return None  # caught mid-write (the writers replace atomically, so rarely)
    return value if isinstance(value, dict) else None
