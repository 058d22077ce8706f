"""One instance's processes: a private PID + mount + UTS namespace running sshd and the onstart script.

Layout of an instance directory (host side) and what each part becomes inside the instance:

    disk.img         -> /workspace            (loop-mounted ext4 of the rented size, kept across restarts; disk.py)
    home/            -> /root                 (bind; private home with .ssh/authorized_keys, onstart.sh)
    tmp/             -> /tmp                  (bind; tmux sockets live here, so no two instances share one)
    etc/upper        -> /etc                  (overlay over the host /etc: sshd_config, host key)
    venv/upper       -> /venv/main            (overlay over the shared base venv)
    logs/            sshd.log, onstart.log, init.log (host side only)

The container environment (secrets included) is given to PID 1 only, which passes it to onstart. sshd builds
a fresh environment for each session, as on Vast in SSH launch mode; only the host's network settings reach
sessions, through ``SetEnv``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import disk
from .environment import PASSTHROUGH

SSHD = "/usr/sbin/sshd"
SSHD_NAMES = ("sshd", "sshd-session", "sshd-auth")  # the listener and, in newer OpenSSH, its per-connection helpers
INSTANCE_MARKER_VAR = "VAST_EMULATOR_INSTANCE"  # lets tests find stray processes of one emulator by environ
SSHD_CONFIG = """\
# sshd of emulated instance {instance_id}
Port {port}
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /root/.ssh/authorized_keys
PrintMotd no
PrintLastLog no
UseDNS no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
{set_env}"""
BASHRC = """\
# Like the vastai/pytorch image: the shared venv comes first on PATH.
case ":$PATH:" in *:/venv/main/bin:*) ;; *) export PATH="/venv/main/bin:$PATH" ;; esac
"""
PROFILE = "[ -f ~/.bashrc ] && . ~/.bashrc\n"


@dataclass(frozen=True)
class LaunchSpec:
    instance_id: int
    instance_dir: Path
    base_venv: Path
    env: dict[str, str]
    ssh_delay_s: float = 0.0
    uv_cache: Path | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_dirs(instance_dir: Path, disk_gb: float) -> None:
    for sub in ("home/.ssh", "home/.cache/uv", "etc/upper/ssh", "etc/work", "venv/upper", "venv/work", "logs"):
        (instance_dir / sub).mkdir(parents=True, exist_ok=True)
    tmp = instance_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    (instance_dir / "home").chmod(0o700)
    home = instance_dir / "home"
    for name, text in ((".bashrc", BASHRC), (".profile", PROFILE), (".no_auto_tmux", "")):
        if not (home / name).exists():
            (home / name).write_text(text)
    key = instance_dir / "etc/upper/ssh/ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    disk.create_image(instance_dir, disk_gb)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def write_authorized_keys(instance_dir: Path, keys: list[str]) -> None:
    _write_private(instance_dir / "home/.ssh/authorized_keys", "".join(k.strip() + "\n" for k in keys))


def sshd_set_env(network_env: dict[str, str]) -> str:
    """The ``SetEnv`` line that gives SSH sessions the host's network settings (PASSTHROUGH names only)."""
    items = []
    for name, value in sorted(network_env.items()):
        if not PASSTHROUGH.match(name) or "\n" in value:
            continue  # never a container variable (they may be secrets); a newline cannot be expressed
        quoted = (name + "=" + value).replace("\\", "\\\\").replace('"', '\\"')
        items.append(f'"{quoted}"')
    return f"SetEnv {' '.join(items)}\n" if items else ""


def write_config(instance_dir: Path, instance_id: int, port: int, network_env: dict[str, str], onstart: str | None) -> None:
    """sshd_config (with the network settings for sessions) and the onstart script; no session environment file."""
    config = SSHD_CONFIG.format(instance_id=instance_id, port=port, set_env=sshd_set_env(network_env))
    _write_private(instance_dir / "etc/upper/ssh/sshd_config", config)
    # Written by emulators that still handed the container env to sessions: it would hold secrets.
    (instance_dir / "home/.ssh/environment").unlink(missing_ok=True)
    _write_private(instance_dir / "home/onstart.sh", onstart or "")


def launch(spec: LaunchSpec) -> subprocess.Popen:
    """Start the instance's namespace init; returns the ``unshare`` process."""
    init_script = resources.files("vast_emulator").joinpath("instance_init.sh")
    env = dict(spec.env)
    env.update(
        {
            "VE_INSTANCE_DIR": str(spec.instance_dir),
            "VE_STATE_DIR": str(spec.instance_dir.parent.parent),
            "VE_BASE_VENV": str(spec.base_venv),
            "VE_SSH_DELAY": f"{spec.ssh_delay_s:g}",
            "VE_UV_CACHE": str(spec.uv_cache) if spec.uv_cache else "",
            INSTANCE_MARKER_VAR: str(spec.instance_dir),
        }
    )
    with open(spec.instance_dir / "logs/init.log", "ab") as log:
        return subprocess.Popen(
            [
                "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                "--kill-child=SIGKILL", "/bin/bash", str(init_script),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C on the emulator's terminal must not reach instances directly
            close_fds=True,
        )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def init_pid(unshare_pid: int) -> int | None:
    """The instance's PID 1 as the host sees it: the one child of its ``unshare`` process."""
    children = _children(unshare_pid)
    return children[0] if children else None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``; below an instance's init that is every process of the instance."""
    found: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += _children(child)
    return found


def kill_sshd(init: int) -> list[int]:
    """SIGKILL the instance's sshd (listener and connections), nothing else; returns the pids killed."""
    killed = []
    for pid in descendants(init):
        try:
            name = Path(f"/proc/{pid}/exe").readlink().name
        except OSError:
            continue
        if name in SSHD_NAMES:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def belongs_to(pid: int, instance_dir: Path) -> bool:
    """True when ``pid`` is the unshare process started for ``instance_dir`` (guards against pid reuse)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{INSTANCE_MARKER_VAR}={instance_dir}".encode() in environ


def terminate(pid: int, popen: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    """Kill the namespace's init (the kernel then kills every process in it) and wait until all are gone."""
    for child in _children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    if popen is not None:
        try:
            popen.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)
            return
    # Not our child (started by an earlier emulator process): kill it and poll until it is gone.
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_sshd(port: int, popen: subprocess.Popen, timeout: float) -> bool:
    """Wait until an SSH server banner is served on 127.0.0.1:port (or the init died / time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
