"""A launch's progress while it rents: one line per event, in a file the controller prints as it grows.

An Ansible module answers once, with one JSON document at its end, and renting can take half an hour of
creates, loading and failovers inside one call. So the provisioner appends its events to a file and the
module's action plugin, which runs in the controller, tails it and prints each line as it appears
(`plugins/action/vast_instance.py`). Progress is best-effort: a write that fails (a full disk) is dropped,
never raised into the provisioner, whose cleanup must run whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from vastkit.records import Instance

# How often a wait whose state does not change says it is still waiting.
STILL_WAITING_EVERY_S = 30.0


class ProgressFile:
    """Appends whole lines to `path`, each written at once (the reader sees complete lines only)."""

    def __init__(self, path: str):
        # Opened once: the controller may remove its temporary directory at exit while a cleanup still writes.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, message: str) -> None:
        line = " ".join(message.split()) + "\n"  # one event, one line, whatever a status message held
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode("utf-8", "replace"))

    def close(self) -> None:
        os.close(self._fd)


def read_new_lines(path: str, offset: int) -> tuple[list[str], int]:
    """The complete lines written after byte `offset`, and the offset after them."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    return data[:end].decode("utf-8", "replace").splitlines(), offset + end


def describe_state(instance: Instance | None, ssh_error: BaseException | None = None) -> str:
    """An instance's state in the words a person waiting wants: status, its message, SSH."""
    if instance is None:
        return "not listed yet"
    status = instance.actual_status or "provisioning"
    words = f"{status} ({instance.status_msg})" if instance.status_msg else status
    if ssh_error is not None:
        words += f"; SSH not ready yet ({type(ssh_error).__name__})"
    return words


class WaitReporter:
    """Says an instance's state when it changes, and every `every` seconds while it does not."""

    def __init__(self, log: Callable[[str], None], instance_id: int, *, clock: Callable[[], float] = time.monotonic,
                 every: float = STILL_WAITING_EVERY_S):
        self.log = log
        self.instance_id = instance_id
        self.clock = clock
        self.every = every
        self.started = clock()
        self._last_words: str | None = None
        self._last_said = self.started

    def __call__(self, words: str) -> None:
        now = self.clock()
        if words != self._last_words:
            self.log(f"instance {self.instance_id}: {words} ({now - self.started:.0f}s)")
        elif now - self._last_said >= self.every:
            self.log(f"instance {self.instance_id}: still {words} ({now - self.started:.0f}s)")
        else:
            return
        self._last_words, self._last_said = words, now
