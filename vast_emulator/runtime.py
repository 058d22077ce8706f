"""One instance's processes: a private PID + mount + UTS namespace running sshd and the onstart script.

Layout of an instance directory (host side) and what each part becomes inside the instance:

    disk/            -> /workspace            (bind; the instance's disk, kept across stop/start)
    home/            -> /root                 (bind; private home with .ssh/authorized_keys, onstart.sh)
    tmp/             -> /tmp                  (bind; tmux sockets live here, so no two instances share one)
    etc/upper        -> /etc                  (overlay over the host /etc: sshd_config, host key, environment)
    venv/upper       -> /venv/main            (overlay over the shared base venv)
    logs/            sshd.log, onstart.log, init.log (host side only)
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

SSHD = "/usr/sbin/sshd"
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
PermitUserEnvironment yes
PrintMotd no
PrintLastLog no
UseDNS no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
"""
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


def prepare_dirs(instance_dir: Path) -> None:
    for sub in ("disk", "home/.ssh", "home/.cache/uv", "etc/upper/ssh", "etc/work", "venv/upper", "venv/work", "logs"):
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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def write_authorized_keys(instance_dir: Path, keys: list[str]) -> None:
    _write_private(instance_dir / "home/.ssh/authorized_keys", "".join(k.strip() + "\n" for k in keys))


def write_config(instance_dir: Path, instance_id: int, port: int, env: dict[str, str], onstart: str | None) -> None:
    """sshd_config, the session environment (for non-interactive sessions too) and /etc/environment."""
    _write_private(instance_dir / "etc/upper/ssh/sshd_config", SSHD_CONFIG.format(instance_id=instance_id, port=port))
    # ~/.ssh/environment (PermitUserEnvironment) is read raw: NAME=value, no quoting.
    _write_private(instance_dir / "home/.ssh/environment", "".join(f"{k}={v}\n" for k, v in env.items()))
    # /etc/environment as the Vast images export it at boot (pam_env syntax).
    _write_private(
        instance_dir / "etc/upper/environment",
        "".join(f'{k}="{v}"\n' for k, v in env.items() if '"' not in v),
    )
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
