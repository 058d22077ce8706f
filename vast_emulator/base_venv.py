"""The one shared base venv that every instance sees (through an overlay) as ``/venv/main``.

It plays the part of the vastai/pytorch image layer: built once per machine, cached under
``~/.cache/vast_emulator/base-venv-main``. It is built *at* the path ``/venv/main`` (a bind mount in a private
mount namespace), so its scripts' shebangs and ``activate`` name the path instances see.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BASE_PYTHON = "/usr/bin/python3"  # outside /root, so it stays visible inside an instance's private /root
TORCH_VERSION = "2.13.0"
PACKAGES = (f"torch=={TORCH_VERSION}", "numpy")
MARKER = ".vast_emulator_base.json"
VENV_MOUNTPOINT = Path("/venv/main")


def default_cache_dir() -> Path:
    return Path(os.environ.get("VAST_EMULATOR_CACHE", Path.home() / ".cache" / "vast_emulator"))


def default_base_venv() -> Path:
    return default_cache_dir() / "base-venv-main"


def _spec() -> dict[str, object]:
    return {"python": BASE_PYTHON, "packages": list(PACKAGES), "layout": 1}


def is_ready(path: Path) -> bool:
    marker = path / MARKER
    try:
        return json.loads(marker.read_text()) == _spec()
    except (OSError, ValueError):
        return False


def ensure_mountpoints() -> None:
    """Create the empty host directories that instance mounts cover (/venv/main, /workspace, /run/sshd)."""
    for path in (VENV_MOUNTPOINT, Path("/workspace"), Path("/run/sshd")):
        path.mkdir(parents=True, exist_ok=True)


def ensure_base_venv(path: Path | None = None, log=print) -> Path:
    """Return the base venv, building it first if needed (minutes, once per machine; later calls are instant)."""
    path = Path(path or default_base_venv())
    if is_ready(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another emulator may be building it right now
        if is_ready(path):
            return path
        _build(path, log)
    return path


def _has_ensurepip() -> bool:
    probe = subprocess.run([BASE_PYTHON, "-c", "import ensurepip"], capture_output=True)
    return probe.returncode == 0


def _build(path: Path, log) -> None:
    ensure_mountpoints()
    building = path.with_name(path.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    log(f"vast_emulator: building the base venv {path} ({' '.join(PACKAGES)}); this happens once per machine")
    packages = " ".join(PACKAGES)
    if _has_ensurepip():
        install = f"{BASE_PYTHON} -m venv /venv/main; /venv/main/bin/python -m pip install -q {packages}"
    else:
        # Debian without python3-venv: make the venv bare, then let this interpreter's pip fill it (pip itself too).
        install = (
            f"{BASE_PYTHON} -m venv --without-pip /venv/main; "
            f"{sys.executable} -m pip --python /venv/main/bin/python install -q pip {packages}"
        )
    script = f'set -e; mount --bind "$1" /venv/main; export PIP_DISABLE_PIP_VERSION_CHECK=1; {install}'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", str(building)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise RuntimeError(f"building the base venv failed (rc={result.returncode}):\n{result.stdout[-4000:]}")
    (building / MARKER).write_text(json.dumps(_spec()))
    if path.exists():
        shutil.rmtree(path)
    os.replace(building, path)
    log(f"vast_emulator: base venv ready at {path}")


if __name__ == "__main__":
    ensure_base_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
