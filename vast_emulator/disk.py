"""An instance's disk: /workspace is an ext4 image of the rented size, so a full disk is a real ENOSPC.

The image (``disk.img`` in the instance directory) is sparse: it costs the host only what the instance
writes. ``mkfs.ext4`` with lazy init takes ~10 ms even for hundreds of GB. instance_init.sh loop-mounts it
inside the instance's mount namespace; the mount (and its autoclear loop device) goes away with the namespace.

The ``disk_full`` fault fills it from the emulator's side through ``/proc/<init>/root``, the instance's own
view of its filesystem, with one preallocated file: no data is written, so filling 500 GB is instant and
costs the host nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

IMAGE_NAME = "disk.img"
LEGACY_DIR = "disk"  # instances created before disks had a size: a plain directory bound at /workspace
FILL_NAME = ".emulator-disk-fill"
GIB = 1024**3
BLOCK = 4096
MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1")


def create_image(instance_dir: Path, disk_gb: float) -> None:
    """Make the instance's disk image once (kept across stop/start/restart); legacy instances keep their dir."""
    image = instance_dir / IMAGE_NAME
    if image.exists() or (instance_dir / LEGACY_DIR).is_dir():
        return
    building = image.with_suffix(".building")
    with open(building, "wb") as handle:
        handle.truncate(int(disk_gb * GIB))
    subprocess.run([*MKFS, str(building)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.replace(building, image)  # a half-made image never gets mounted


def _workspace(init_pid: int) -> Path:
    return Path(f"/proc/{init_pid}/root/workspace")


def free_bytes(init_pid: int) -> int:
    """Bytes an unprivileged write could still use on the instance's /workspace."""
    stat = os.statvfs(_workspace(init_pid))
    return stat.f_bavail * stat.f_frsize


def fill(init_pid: int, leave_bytes: int) -> int:
    """Preallocate one file until at most ``leave_bytes`` stay free (never more than asked); returns free bytes."""
    fd = os.open(_workspace(init_pid) / FILL_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = 1 << 40
        while chunk >= BLOCK:
            want = min(chunk, free_bytes(init_pid) - leave_bytes) // BLOCK * BLOCK
            if want < BLOCK:
                break
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, want)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = want // 2  # the filesystem's own metadata needs some of what statvfs called free
    finally:
        os.close(fd)
    return free_bytes(init_pid)


def unfill(init_pid: int) -> None:
    """Remove the fill file: the space is back at once."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_workspace(init_pid) / FILL_NAME)
