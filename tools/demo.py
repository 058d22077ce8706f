"""`make demo`: a whole launch on this machine, against the local Vast.ai emulator and a local S3 bucket.

1. installs what is missing (apt: openssh-server, rclone, tmux, git, rsync, e2fsprogs);
2. starts the emulator and the S3 server (moto) on 127.0.0.1;
3. pushes the credentials into the account (ansible-playbook playbooks/setup_env.yml);
4. generates a small Burgers dataset with the project's solver and uploads it (python -m training data --upload);
5. runs ansible-playbook playbooks/launch.yml -e config=burgers32_cpu (the CPU preset of burgers32);
6. follows the run stage by stage until the instance has destroyed itself;
7. shows what is left: the instance gone, the artifacts in the bucket, the evaluation table.

Everything it started is stopped on exit, on failure and on Ctrl-C. W&B runs offline (no network).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.world import LocalWorld, local_world
from vastkit.follow import Follower, FollowSettings
from vastkit.runs import Sources
from vastkit.runs_bucket import RunBucket
from vastkit.runs_remote import SshSettings

APT_PACKAGES = ("openssh-server", "rclone", "tmux", "git", "rsync", "e2fsprogs")  # e2fsprogs: sized instance disks


@dataclass(frozen=True)
class DemoPlan:
    """Which config to launch and the dataset to make for it."""

    config: str
    samples: int
    resolution: int
    frames: int = 201
    frame_dt: float = 0.01
    solver_resolution: int | None = None
    generator_args: tuple[str, ...] = ()
    launch_args: tuple[str, ...] = ()
    code_source: str = "git"  # the launching commit, cloned (shallow) from this checkout served over git://
    follow_timeout_s: float = 600.0


# The CPU preset of burgers32 (configs/burgers32_cpu.yaml): data in ~1 min, `all` in ~2-3 min on 2 cores.
CPU_PLAN = DemoPlan(config="burgers32_cpu", samples=200, resolution=128, solver_resolution=1024,
                    generator_args=("--max-displacement", "1e-3"))
# The tests' plan (configs/tiny.yaml): data in ~2 s, `all` in ~20 s.
TINY_PLAN = DemoPlan(config="tiny", samples=40, resolution=32, frames=11, frame_dt=0.05, solver_resolution=128,
                     follow_timeout_s=300)


@dataclass
class DemoOutcome:
    run_name: str
    launch_seconds: float
    run_seconds: float
    final_state: str | None
    instance_gone: bool
    artifacts: list[str] = field(default_factory=list)
    metrics_table: str = ""
    launch_output: str = field(default="", repr=False)


def prepare(world: LocalWorld, plan: DemoPlan, say=print) -> None:
    say("==> pushing the credentials into the (emulated) Vast account: ansible-playbook playbooks/setup_env.yml")
    world.setup_env()
    say(f"==> generating {plan.samples} Burgers trajectories ({plan.resolution} points) and uploading them "
        "to the bucket: python -m training data ... --upload")
    started = time.monotonic()
    prefix = world.upload_dataset(f"configs/{plan.config}.yaml", samples=plan.samples, resolution=plan.resolution,
                                  frames=plan.frames, frame_dt=plan.frame_dt,
                                  solver_resolution=plan.solver_resolution, extra=plan.generator_args)
    say(f"    s3://{world.s3.bucket}/{prefix}/: {', '.join(k.rsplit('/', 1)[-1] for k in world.s3.keys(prefix))} "
        f"({time.monotonic() - started:.0f} s)")


def run(world: LocalWorld, plan: DemoPlan, run_name: str, say=print, stream_ansible: bool = True) -> DemoOutcome:
    """Launch, follow to the end, and collect what a user would look at."""
    say(f"==> ansible-playbook playbooks/launch.yml -e config={plan.config}   (run {run_name})")
    started = time.monotonic()
    launch = world.launch(plan.config, run_name, *plan.launch_args, code_source=plan.code_source,
                          stream=stream_ansible)
    launched = time.monotonic()
    say(f"==> following run {run_name} (heartbeat.json over SSH) until the instance destroys itself")
    final = follow(world, run_name, timeout=plan.follow_timeout_s, say=say)
    outcome = DemoOutcome(
        run_name=run_name, launch_seconds=round(launched - started, 1), run_seconds=round(time.monotonic() - launched, 1),
        final_state=(final or {}).get("state"), instance_gone=not world.instances(run_name),
        artifacts=world.artifacts(run_name), launch_output=launch.stdout,
    )
    if "metrics/metrics.md" in outcome.artifacts:
        outcome.metrics_table = world.s3.read(f"runs/{run_name}/metrics/metrics.md").decode()
    return outcome


def follow(world: LocalWorld, run_name: str, *, timeout: float, say=print, poll: float = 2.0) -> dict | None:
    """`python -m vastkit follow RUN` with the world's key, known_hosts and bucket: one line per stage (and per
    state change) and the stage's log, until the instance is gone; returns the final heartbeat. The metrics
    table is left to `show`."""
    sources = Sources(api=world.api(), bucket=RunBucket.from_env(world.env()),
                      ssh=SshSettings(key_file=world.keys.private_key, known_hosts_dir=world.root / "known_hosts"))
    return Follower(sources, run_name, FollowSettings(poll_s=poll, timeout_s=timeout, metrics=False), say=say).run()


def show(outcome: DemoOutcome, world: LocalWorld, say=print) -> None:
    say("")
    say(f"==> run {outcome.run_name}: {outcome.final_state}; launch took {outcome.launch_seconds} s, "
        f"training + sync + self-destroy {outcome.run_seconds} s")
    say(f"    instance: {'destroyed by its own supervisor (the emulator lists no instance with this label)' if outcome.instance_gone else 'STILL THERE'}")
    groups: dict[str, int] = {}
    for key in outcome.artifacts:
        top = key.split("/", 1)[0] if "/" in key else key
        groups[top] = groups.get(top, 0) + 1
    say(f"    bucket s3://{world.s3.bucket}/runs/{outcome.run_name}/: "
        + ", ".join(f"{name} ({count})" for name, count in sorted(groups.items())))
    checkpoints = sorted(k for k in outcome.artifacts if k.startswith("checkpoints/") and k.endswith("final.pt"))
    say(f"    final checkpoints: {', '.join(checkpoints) or 'none'}")
    if outcome.metrics_table:
        say("")
        say(outcome.metrics_table.rstrip())


def ensure_system_packages(say=print) -> None:
    missing = [p for p in APT_PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    say(f"==> installing {' '.join(missing)} (apt-get)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                   env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (state, logs) afterwards")
    parser.add_argument("--run-name", default=f"burgers32-cpu-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    ensure_system_packages()
    root = Path(tempfile.mkdtemp(prefix="universal-simulator-demo-"))
    started = time.monotonic()
    try:
        print(f"==> starting the Vast.ai emulator and the S3 server (state in {root})")
        with local_world(root) as world:
            print(f"    emulator {world.emulator.url}, bucket s3://{world.s3.bucket} at {world.s3.endpoint}")
            prepare(world, CPU_PLAN)
            outcome = run(world, CPU_PLAN, args.run_name)
            show(outcome, world)
        ok = outcome.final_state == "succeeded" and outcome.instance_gone
        print(f"\n==> demo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s; "
              "emulator and S3 server stopped")
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\n==> interrupted: emulator and S3 server stopped, instances destroyed with them")
        return 130
    finally:
        if args.keep:
            print(f"    kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
