"""Measure the emulator, and a fleet launch against Vast's rate limits.

    python -m vast_emulator.bench [--loading-delay 0] [--rounds 5]
        create -> running -> SSH command answered, sequentially and for a fleet of 4 at once (no rate limits).
        Figures exclude the loading delay (it is configured, not work); the base venv must be built already.

    python -m vast_emulator.bench fleet [--runs 16] [--scale 1] [--loading-delay 2] [--poll-interval 5]
        `ansible-playbook launch.yml -e provision=false` for one run, then for a fleet of --runs, against an
        emulator enforcing Vast's rate limits times --scale (the client paces at the same scale). Reports both
        wall times, the floor the rate limits impose on the fleet (one run's time plus (runs - 1) create
        intervals of 4.5 s), the 429s the emulator answered and whether every run came up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .testing import EmulatorHandle, connect_ssh, make_ssh_keypair, running_emulator, ssh_run

REPO = Path(__file__).resolve().parents[1]
CREATE_INTERVAL_S = 4.5


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


def _playbook(env: dict, common: list[str], *args: str) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), *args, *common], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    return done.returncode, time.monotonic() - started, done.stdout


def fleet_launch(runs: int, scale: float, loading_delay: float, poll_interval: float) -> dict:
    """One run, then `runs` side by side, through launch.yml (provision=false); the figures as a dict."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = make_ssh_keypair(root / "ssh")
        with running_emulator(root / "state", loading_delay=loading_delay, rate_limit_scale=scale) as emu:
            emu.register_ssh_key(keys.public_key)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("VAST_", "ANSIBLE_", "VASTKIT_"))}
            env.update(VAST_URL=emu.url, VAST_API_KEY=emu.api_key, VASTKIT_PACING_SCALE=str(scale),
                       VASTKIT_PACING_DIR=str(root / "pacing"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"), ANSIBLE_SSH_CONTROL_PATH_DIR=str(root / "cp"))
            common = ["-e", f"ssh_key_file={keys.private_key}", "-e", f"known_hosts_dir={root / 'known_hosts'}",
                      "-e", "gpu=any", "-e", "min_reliability=0.9", "-e", "disk=16", "-e", "config=tiny",
                      "-e", "provision=false", "-e", f"poll_interval={poll_interval:g}"]
            rc, single_s, out = _playbook(env, common, "launch.yml", "-e", "run_name=bench-solo")
            if rc != 0:
                raise RuntimeError(f"the single launch failed:\n{out[-4000:]}")
            rc, _, out = _playbook(env, [], "playbooks/teardown.yml", "-e", "run=bench-solo")
            since = emu.requests()[-1]["seq"]
            launched_at = time.time()
            rc, fleet_s, out = _playbook(env, common, "launch.yml", "-e", "run_name=bench-fleet", "-e",
                                         f"count={runs}", "-e", "confirm_count=true")
            log = emu.requests(since)
            rows = [r for r in emu.state()["instances"] if (r["label"] or "").startswith("bench-fleet-")]
            up = sum(1 for r in rows if r["actual_status"] == "running")
            figures = {
                "runs": runs, "rate_limit_scale": scale, "loading_delay_s": loading_delay,
                "poll_interval_s": poll_interval, "launch_rc": rc, "runs_running": up,
                "single_s": round(single_s, 1), "fleet_s": round(fleet_s, 1),
                "floor_s": round(single_s + (runs - 1) * CREATE_INTERVAL_S * scale, 1),
                "creates": sum(1 for e in log if e["method"] == "PUT" and e["path"].startswith("/api/v0/asks/")),
                "listings": sum(1 for e in log if e["method"] == "GET" and
                                e["path"].split("?")[0].rstrip("/") in ("/api/v1/instances", "/api/v0/instances")),
                "shows": sum(1 for e in log if e["method"] == "GET" and e["path"].startswith("/api/v0/instances/2")),
                "rate_limited_429": sum(1 for e in log if e["status"] == 429),
            }
            create_times = [e["time"] - launched_at for e in log
                            if e["method"] == "PUT" and e["path"].startswith("/api/v0/asks/")]
            if create_times:  # when the creates reached the API, from the fleet launch's start
                figures["first_create_at_s"] = round(min(create_times), 1)
                figures["last_create_at_s"] = round(max(create_times), 1)
                figures["create_span_floor_s"] = round((runs - 1) * CREATE_INTERVAL_S * scale, 1)
            figures["fleet_over_floor"] = round(fleet_s / figures["floor_s"], 2)
            figures["fleet_over_single"] = round(fleet_s / single_s, 2)
            if rc != 0:
                figures["tail"] = out[-3000:]
            _playbook(env, [], "playbooks/teardown.yml", "-e", "run=bench-fleet")
            for row in emu.state()["instances"]:
                emu.destroy(row["id"])
    return figures


def main() -> None:
    if sys.argv[1:2] == ["fleet"]:
        parser = argparse.ArgumentParser(prog="python -m vast_emulator.bench fleet", description=__doc__)
        parser.add_argument("--runs", type=int, default=16)
        parser.add_argument("--scale", type=float, default=1.0, help="rate-limit scale (1: Vast's own limits)")
        parser.add_argument("--loading-delay", type=float, default=2.0)
        parser.add_argument("--poll-interval", type=float, default=5.0, help="launch's poll_interval (its default)")
        args = parser.parse_args(sys.argv[2:])
        print(json.dumps(fleet_launch(args.runs, args.scale, args.loading_delay, args.poll_interval), indent=1))
        return
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
