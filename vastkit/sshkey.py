"""The launch key, checked with the SSH client Ansible connects with (OpenSSH), before anything is rented.

A key that ssh cannot use unattended (a passphrase and no agent holding it, permissions ssh refuses, a `.pub`
that is another key's) would otherwise look like a host that refuses SSH, and the failover would rent up to
`max_attempts` machines before giving up.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

MAKE_KEY = "ssh-keygen -t ed25519 -N '' -f {path}"


@dataclass(frozen=True)
class KeyCheck:
    problem: str | None = None  # why Ansible's ssh could not log in with this key; None when it can
    via_agent: bool = False  # the key has a passphrase and ssh-agent holds it


def _key_id(public_line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of an OpenSSH public key line; the comment does not matter."""
    parts = public_line.split()
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def check_launch_key(private_key: Path, *, timeout: float = 15.0, env: dict | None = None) -> KeyCheck:
    """Whether `ssh -i private_key` can log in without asking anything: the pair exists, the private half is
    private (ssh refuses a key others can read), `.pub` belongs to it, and a passphrase is covered by ssh-agent."""
    public_key = Path(f"{private_key}.pub")
    if not private_key.is_file() or not public_key.is_file():
        missing = private_key if not private_key.is_file() else public_key
        return KeyCheck(
            f"ssh_key_file: no SSH key pair at {private_key} (+ .pub): {missing} does not exist. Create one with: "
            f"{MAKE_KEY.format(path=private_key)} or name another with -e ssh_key_file=PATH. (Launch does not "
            "create keys for you: the key is registered on your Vast account and grants root on every instance.)")
    mode = private_key.stat().st_mode
    if mode & 0o077 and private_key.stat().st_uid == os.getuid():
        return KeyCheck(
            f"ssh_key_file: {private_key} is readable by others (mode {stat.filemode(mode)}); ssh refuses such a "
            f"key (UNPROTECTED PRIVATE KEY FILE). Fix: chmod 600 {private_key}")
    wanted = _key_id(public_key.read_text(errors="replace"))
    if wanted is None:
        return KeyCheck(f"ssh_key_file: {public_key} is not an OpenSSH public key (expected 'TYPE BASE64 [comment]')")
    try:
        derived = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(private_key)], capture_output=True,
                                 text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        return KeyCheck("ssh_key_file: ssh-keygen (OpenSSH) is not installed; Ansible connects to instances with "
                        "OpenSSH's ssh: install openssh-client")
    except subprocess.TimeoutExpired:
        return KeyCheck(f"ssh_key_file: ssh-keygen did not read {private_key} within {timeout:g}s")
    if derived.returncode == 0:
        if _key_id(derived.stdout) != wanted:
            return KeyCheck(f"ssh_key_file: {public_key} is not the public half of {private_key} (another key's "
                            f".pub): regenerate it with ssh-keygen -y -f {private_key} > {public_key}")
        return KeyCheck()
    if "passphrase" not in derived.stderr.lower():
        return KeyCheck(f"ssh_key_file: ssh-keygen cannot read {private_key} as a private key: "
                        f"{derived.stderr.strip() or f'exit {derived.returncode}'}")
    if wanted in _agent_keys(timeout, env):
        return KeyCheck(via_agent=True)
    return KeyCheck(
        f"ssh_key_file: {private_key} is protected by a passphrase and ssh-agent does not hold it, so Ansible's ssh "
        f"cannot use it unattended (every instance would look unreachable). Add it to the agent: ssh-add "
        f"{private_key}, or use a launch key without a passphrase: {MAKE_KEY.format(path='~/.ssh/vast_launch')} "
        "-e ssh_key_file=~/.ssh/vast_launch")


def _agent_keys(timeout: float, env: dict | None) -> set[tuple[str, str]]:
    """The public keys ssh-agent holds (none when no agent is reachable)."""
    try:
        listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if listed.returncode != 0:
        return set()
    return {key for key in map(_key_id, listed.stdout.splitlines()) if key is not None}
