"""`ssh <run>`: one OpenSSH config entry per run, in a directory that `~/.ssh/config` includes once.

Why: Ansible keeps each instance's host key in its own known_hosts file (a rented machine's key is new each
time while a proxy's host:port is reused), so a bare `ssh -i KEY -p PORT root@HOST` prompts, or fails in
batch mode with "Host key verification failed". The entry names that file, the launch key and the address,
so `ssh <run>`, `ssh <run> -t tmux attach -t training` and `ssh -L 6006:localhost:6006 <run>` just work.

The `Include` goes at the top of the user's config: OpenSSH scopes an `Include` inside a `Host` or `Match`
block to that block. Files are written whole and atomically (a temporary dot-file, which the `*` glob skips,
then a rename); a symlinked `~/.ssh/config` is edited where it points, not replaced.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from run_contract import run_name_error

DEFAULT_DIR = "~/.ssh/universal_simulator"
DEFAULT_CONFIG = "~/.ssh/config"
USER = "root"  # Vast's images log in as root
_HOST = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+$")  # a DNS name or an IPv4/IPv6 address, nothing ssh would parse
_BLOCK = re.compile(r"^\s*(host|match)(\s|=)", re.IGNORECASE)
_INCLUDE = re.compile(r"^\s*include(\s+|\s*=\s*)(?P<args>.+)$", re.IGNORECASE)
MARKER = "# universal_simulator: `ssh <run>` for each launched run (teardown removes the entry)"


class SshConfigError(ValueError):
    """An entry that OpenSSH would misread: says which value and what is allowed."""


def _path_arg(path: str, what: str) -> str:
    if any(c in path for c in '"\n\r\0'):
        raise SshConfigError(f"{what} {path!r}: a path with a quote or a line break cannot go into an SSH config")
    return f'"{path}"' if any(c.isspace() for c in path) else path


@dataclass(frozen=True)
class SshEntry:
    """What `ssh <run>` needs: where the run's instance answers, with which key and which known_hosts."""

    run: str
    host: str
    port: int
    identity_file: str
    known_hosts_file: str

    def __post_init__(self) -> None:
        problem = run_name_error(self.run)
        if problem:
            raise SshConfigError(f"name: {problem}")
        if not _HOST.match(self.host or ""):
            raise SshConfigError(f"host {self.host!r}: expected a host name or IP address")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise SshConfigError(f"port {self.port!r}: expected a whole number from 1 to 65535")
        for what in ("identity_file", "known_hosts_file"):
            if not os.path.isabs(getattr(self, what)):
                raise SshConfigError(f"{what} {getattr(self, what)!r}: expected an absolute path")
            _path_arg(getattr(self, what), what)

    def render(self) -> str:
        return "\n".join([
            f"# Run {self.run}, written by launch.yml; teardown.yml removes it.",
            f"Host {self.run}",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {USER}",
            f"  IdentityFile {_path_arg(self.identity_file, 'identity_file')}",
            "  IdentitiesOnly yes",  # only the launch key: agent keys first could exhaust MaxAuthTries
            f"  UserKnownHostsFile {_path_arg(self.known_hosts_file, 'known_hosts_file')}",
            "  StrictHostKeyChecking accept-new",
            "  ServerAliveInterval 15",
            "",
        ])


def entry_path(config_dir: str | Path, run: str) -> Path:
    """The run's file in `config_dir` (the run-name rule keeps it a plain file name)."""
    problem = run_name_error(run)
    if problem:
        raise SshConfigError(f"name: {problem}")
    return Path(config_dir).expanduser() / run


def include_line(config_dir: str | Path) -> str:
    return f"Include {_path_arg(str(Path(config_dir).expanduser().absolute()) + '/*', 'config_dir')}"


# -- reading and planning (no writes) -----------------------------------------------------------------------


def read_entry(config_dir: str | Path, run: str) -> str | None:
    path = entry_path(config_dir, run)
    return path.read_text() if path.is_file() else None


def has_include(config_text: str, config_dir: str | Path) -> bool:
    """Whether the config includes `config_dir/*` where it applies to every host (before any Host/Match)."""
    wanted = include_line(config_dir).split(None, 1)[1].strip('"')
    for line in config_text.splitlines():
        if _BLOCK.match(line):
            return False
        found = _INCLUDE.match(line)
        if found and wanted in (os.path.expanduser(a.strip('"')) for a in _split_args(found.group("args"))):
            return True
    return False


def _split_args(args: str) -> list[str]:
    return re.findall(r'"[^"]*"|\S+', args.split(" #", 1)[0])


def with_include(config_text: str, config_dir: str | Path) -> str:
    """`config_text` with the Include at its top (unchanged if it has it)."""
    if has_include(config_text, config_dir):
        return config_text
    return f"{MARKER}\n{include_line(config_dir)}\n" + (f"\n{config_text}" if config_text else "")


# -- writes -------------------------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_entry(entry: SshEntry, config_dir: str | Path) -> bool:
    """Write the run's entry; False when it already reads so."""
    path = entry_path(config_dir, entry.run)
    text = entry.render()
    if path.is_file() and path.read_text() == text:
        return False
    _write_atomically(path, text, 0o600)
    return True


def remove_entry(config_dir: str | Path, run: str) -> bool:
    """Remove the run's entry; False when there was none."""
    path = entry_path(config_dir, run)
    if not path.is_file():
        return False
    path.unlink()
    return True


def ensure_include(config_file: str | Path, config_dir: str | Path) -> bool:
    """Put `Include <config_dir>/*` at the top of `config_file` once; False when it is there already."""
    path = Path(config_file).expanduser()
    real = path.resolve() if path.is_symlink() else path
    text = real.read_text() if real.is_file() else ""
    new = with_include(text, config_dir)
    if new == text:
        return False
    mode = real.stat().st_mode & 0o777 if real.is_file() else 0o600
    _write_atomically(real, new, mode)
    return True
