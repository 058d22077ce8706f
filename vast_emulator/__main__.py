"""``python -m vast_emulator --port PORT --state-dir DIR``: run the emulator in the foreground."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from .app import Emulator, EmulatorConfig
from .base_venv import BASE_PYTHON, default_base_venv

REQUIREMENTS = (
    ("unshare", "apt-get install util-linux"),
    ("/usr/sbin/sshd", "apt-get install openssh-server"),
    ("ssh-keygen", "apt-get install openssh-client"),
    (BASE_PYTHON, "apt-get install python3 python3-venv"),
    ("mount", "apt-get install mount"),
    ("losetup", "apt-get install mount"),
    ("mkfs.ext4", "apt-get install e2fsprogs"),  # /workspace is an ext4 image of the rented size
)
LOOP_CONTROL = Path("/dev/loop-control")


def missing_requirement() -> str | None:
    """One line naming what is missing and how to install it, or None."""
    if os.geteuid() != 0:
        return "vast_emulator must run as root (it creates mount and PID namespaces for instances)"
    for tool, install in REQUIREMENTS:
        if shutil.which(tool) is None:
            return f"vast_emulator needs {tool}, which is missing: {install}"
    if not LOOP_CONTROL.exists():
        return (
            "vast_emulator needs loop devices (/dev/loop-control) to mount instance disks: modprobe loop "
            "(in a container, give it /dev/loop-control and /dev/loop*)"
        )
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vast_emulator", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="where state, instances and the key live")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--loading-delay", type=float, default=2.0, help="seconds an instance spends loading")
    parser.add_argument(
        "--rate-limit-scale", type=float, default=1.0,
        help="multiply Vast's per-endpoint rate-limit intervals by this (default 1: Vast's own; 0: no limits)",
    )
    parser.add_argument(
        "--strict-env-values", action="store_true",
        help="refuse account env-var values outside the documented pattern ^[a-zA-Z0-9_\\-\\.]+$",
    )
    parser.add_argument("--offers", type=Path, help="offer catalogue JSON (default: the packaged catalogue)")
    parser.add_argument("--faults", type=Path, help="faults to install at startup (JSON, see docs/emulator.md)")
    parser.add_argument("--base-venv", type=Path, help=f"shared base venv (default {default_base_venv()})")
    parser.add_argument(
        "--uv-cache",
        type=Path,
        default=Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv"),
        help="host uv cache bound into instances at /root/.cache/uv (the emulator's layer cache); '' disables",
    )
    args = parser.parse_args(argv)
    if args.loading_delay < 0:
        parser.error("--loading-delay must be >= 0 seconds")
    if args.rate_limit_scale < 0:
        parser.error("--rate-limit-scale must be >= 0 (0 turns the rate limits off)")
    for name in ("offers", "faults"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            parser.error(f"--{name} {path}: no such file")
    state = str(args.state_dir.resolve())
    if any(c in state for c in ",:"):
        parser.error(f"--state-dir {state}: must not contain ',' or ':' (it becomes an overlayfs mount option)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = missing_requirement()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    uv_cache = args.uv_cache if str(args.uv_cache) not in ("", ".") else None
    if uv_cache is not None:
        uv_cache.mkdir(parents=True, exist_ok=True)
    config = EmulatorConfig(
        state_dir=args.state_dir.resolve(),
        host=args.host,
        port=args.port,
        loading_delay_s=args.loading_delay,
        offers_file=args.offers,
        faults_file=args.faults,
        base_venv=args.base_venv,
        uv_cache=uv_cache,
        rate_limit_scale=args.rate_limit_scale,
        strict_env_values=args.strict_env_values,
    )
    emulator = Emulator(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    url = emulator.start()
    print(f"vast_emulator listening on {url}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        emulator.stop()
    print("vast_emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
