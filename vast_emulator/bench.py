"""Measure create -> running -> SSH command answered, sequentially and for a fleet of 4 at once.

    python -m vast_emulator.bench [--loading-delay 0] [--rounds 5]

Figures exclude the loading delay (it is configured, not work); the base venv must be built already.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from .testing import EmulatorHandle, connect_ssh, make_ssh_keypair, running_emulator, ssh_run


def _one(emu: EmulatorHandle, key: Path, results: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    instance_id = emu.launch()
    row = emu.wait_status(instance_id, "running", timeout=60)
    running = time.monotonic() - started
    client = connect_ssh(row, key, timeout=30)
    status, out, _ = ssh_run(client, "python -c 'import sys; print(sys.prefix)'")
    client.close()
    ready = time.monotonic() - started
    assert status == 0 and out.strip() == "/venv/main", out
    results.append((running, ready))
    emu.destroy(instance_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loading-delay", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = make_ssh_keypair(Path(tmp) / "ssh")
        with running_emulator(Path(tmp) / "state", loading_delay=args.loading_delay) as emu:
            emu.register_ssh_key(keys.public_key)
            sequential: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                _one(emu, keys.private_key, sequential)
            fleet: list[tuple[float, float]] = []
            threads = [threading.Thread(target=_one, args=(emu, keys.private_key, fleet)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    delay = args.loading_delay
    for name, rows in (("sequential", sequential), ("fleet of 4", fleet)):
        running = [r - delay for r, _ in rows]
        ready = [s - delay for _, s in rows]
        print(
            f"{name:>10}: create->running median {statistics.median(running):.2f}s max {max(running):.2f}s; "
            f"create->SSH command answered median {statistics.median(ready):.2f}s max {max(ready):.2f}s "
            f"(+ loading delay {delay:g}s, n={len(rows)})"
        )


if __name__ == "__main__":
    main()
