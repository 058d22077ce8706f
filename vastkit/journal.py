"""The controller's local record of creates in flight, and the per-run lock.

A launch writes a journal entry **before** it sends a create, fills in the instance id when the API answers,
and removes the entry once that instance is handed over (the launch returned it as usable) or destroyed and
verified gone. So what a journal names is, by construction, an instance this machine asked for and never
handed to anyone. A controller that died hard (SIGKILL, laptop off) leaves its entries behind; the next
launch, status or teardown on this machine destroys exactly the instances they name, and nothing else.

Every create carries a unique token in its environment (`VASTKIT_CREATE=<launch>.<n>`), which the API
returns in the instance's `extra_env`; an entry names its instance by that token, so an entry whose create
was cut off before the API answered still names the instance the create may have made.

The per-run lock (`flock`, released by the kernel when the holder dies, SIGKILL included) keeps two launches
of one run on this machine apart, and tells a recovery whether an entry's launch is still alive: an entry is
only recovered while its run's lock can be taken.

Layout: `$VASTKIT_STATE_DIR` (else `$XDG_CACHE_HOME/vastkit`, else `~/.cache/vastkit`) holds
`journal/<run>@<api>.json` and `locks/<run>@<api>.lock`, where `<api>` is a short hash of the API URL (a
journal of one API never touches instances of another).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_DIR_ENV = "VASTKIT_STATE_DIR"
CREATE_TOKEN_ENV = "VASTKIT_CREATE"  # set on every create: "<launch id>.<attempt>"
# A create whose answer never came may still show up this long after it was sent (create timeout, slow
# listing); until then a pending entry is kept even when nothing carries its token yet.
PENDING_GRACE_S = 600.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def state_dir() -> Path:
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vastkit"


def api_key_of(url: str) -> str:
    """A short stable name for an API URL (file names only; not secret, the URL carries no key)."""
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:10]


def _file_stem(label: str, url: str) -> str:
    return f"{_SAFE.sub('_', label)[:150]}@{api_key_of(url)}"


def launch_of(token: str | None) -> str | None:
    """The launch id of a create token (`abc123.2` -> `abc123`)."""
    if not token or "." not in token:
        return None
    return token.rsplit(".", 1)[0]


@dataclass
class CreateEntry:
    token: str
    offer_id: int | None
    requested_at: float
    instance_id: int | None = None


@dataclass
class JournalFile:
    label: str
    api_url: str
    pid: int = 0
    host: str = ""
    creates: list[CreateEntry] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JournalFile:
        raw = json.loads(text)
        creates = [CreateEntry(token=str(c["token"]), offer_id=c.get("offer_id"),
                               requested_at=float(c.get("requested_at") or 0.0), instance_id=c.get("instance_id"))
                   for c in raw.get("creates") or []]
        return cls(label=str(raw["label"]), api_url=str(raw["api_url"]), pid=int(raw.get("pid") or 0),
                   host=str(raw.get("host") or ""), creates=creates)


class RunBusy(RuntimeError):
    """Another live process on this machine holds the run's lock (a launch of the same run name)."""

    def __init__(self, label: str, holder: str):
        self.label = label
        self.holder = holder
        super().__init__(
            f"another launch of run {label!r} is in progress on this machine ({holder or 'holder unknown'}); "
            f"wait for it to finish (or stop it: it destroys what it created), or use another run_name")


class RunLock:
    """An exclusive, non-blocking `flock` on one run of one API. The kernel drops it when the holder dies."""

    def __init__(self, label: str, url: str, root: Path | None = None):
        self.label = label
        self.path = (root or state_dir()) / "locks" / f"{_file_stem(label, url)}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if taken now; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        if not self.acquire():
            raise RunBusy(self.label, self.holder())
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Journal:
    """The journal of one run (label) on one API. Writes are atomic (temp file + rename)."""

    def __init__(self, label: str, url: str, root: Path | None = None):
        self.label = label
        self.url = url.rstrip("/")
        self.root = root or state_dir()
        self.path = self.root / "journal" / f"{_file_stem(label, url)}.json"

    # -- reading ----------------------------------------------------------------------------------------------

    def read(self) -> JournalFile:
        try:
            return JournalFile.from_json(self.path.read_text())
        except FileNotFoundError:
            return JournalFile(self.label, self.url)
        except (OSError, ValueError, KeyError, TypeError):
            # A torn or foreign file: keep it for a person to read, start a fresh record beside it.
            with contextlib.suppress(OSError):
                self.path.rename(self.path.with_suffix(f".corrupt-{int(time.time())}"))
            return JournalFile(self.label, self.url)

    def entries(self) -> list[CreateEntry]:
        return self.read().creates

    # -- writing ----------------------------------------------------------------------------------------------

    def _write(self, data: JournalFile) -> None:
        if not data.creates:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        data.pid, data.host = os.getpid(), socket.gethostname()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(data.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def will_create(self, token: str, offer_id: int | None) -> None:
        """Before the create request goes out."""
        data = self.read()
        data.creates.append(CreateEntry(token=token, offer_id=offer_id, requested_at=time.time()))
        self._write(data)

    def created(self, token: str, instance_id: int) -> None:
        data = self.read()
        for entry in data.creates:
            if entry.token == token:
                entry.instance_id = int(instance_id)
        self._write(data)

    def forget(self, token: str) -> None:
        """The create certainly made nothing, or its instance was destroyed (verified) or handed over."""
        data = self.read()
        data.creates = [e for e in data.creates if e.token != token]
        self._write(data)


def journals(url: str, root: Path | None = None) -> list[Journal]:
    """Every run's journal on this machine for the API at `url`."""
    folder = (root or state_dir()) / "journal"
    suffix = f"@{api_key_of(url)}.json"
    found = []
    for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        try:
            label = JournalFile.from_json(path.read_text()).label
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append(Journal(label, url, root))
    return found


@contextlib.contextmanager
def recoverable(journal: Journal) -> Iterator[bool]:
    """Yields True while this process may recover `journal`: its run's lock is free (the launch is dead)."""
    lock = RunLock(journal.label, journal.url, journal.root)
    taken = lock.acquire()
    try:
        yield taken
    finally:
        if taken:
            lock.release()
