"""`python -m instance_agent <command>` (also installed as `instance-agent`), on the instance.

The agent (`serve`) is started by onstart with the container's environment; the roles talk to it with
`call`. Commands that need the bucket read the container's environment from PID 1 when the session lacks it
(SSH sessions on Vast do). Results are one JSON line on stdout; errors one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import run_contract as contract
from instance_agent.layout import (
    DEFAULT_CODE_DIR,
    PIPELINE_LOG,
    STATE_DIR,
    SUPERVISOR_LOG,
    default_policy_path,
)
from instance_agent.policy import PolicyError, load_policy


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (PolicyError, ValueError, RuntimeError) as exc:  # our errors say what to do: no traceback for them
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _agent_dir() -> Path:
    return Path(os.environ.get("INSTANCE_AGENT_DIR", contract.AGENT_DIR))


def _serve(args) -> int:
    from instance_agent.agent import Agent
    from instance_agent.environ import container_environ

    _log_to(_agent_dir() / "agent.log", stdout=False)
    agent = Agent(agent_dir=_agent_dir(), code_dir=Path(args.code_dir), environ=container_environ(),
                  tick_s=args.tick)
    return agent.serve()


def _supervise(args) -> int:
    from instance_agent.agent import CREATED_AT_ENV, STARTS_ENV
    from instance_agent.environ import container_environ
    from instance_agent.supervisor import Supervisor

    policy = load_policy(args.policy or default_policy_path(args.code_dir))
    _log_to(policy.code_path / SUPERVISOR_LOG)
    created = os.environ.get(CREATED_AT_ENV)
    return Supervisor(policy, environ=container_environ(), created_at=float(created) if created else None,
                      starts=int(os.environ.get(STARTS_ENV) or 1)).run()


def _call(args) -> int:
    from instance_agent import inbox

    payload = json.loads(args.args) if args.args else {}
    if not isinstance(payload, dict):
        raise ValueError(f"--args must be a JSON object, got {args.args!r}")
    reply = inbox.request(_agent_dir(), args.op, payload, timeout=args.timeout)
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 2


def _install_agent(args) -> int:
    """Make stage 0 become the agent (it execs once it sees the ready flag); wait until the agent answers.

    When no stage 0 runs (an instance created with another onstart), start the agent here, detached, with the
    container's environment read from PID 1: the instance still gets its lease and its supervision.
    """
    from instance_agent import inbox
    from instance_agent.agentstate import READY_NAME
    from instance_agent.environ import container_environ

    agent_dir = _agent_dir()
    agent_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (agent_dir / READY_NAME).write_text("1\n")
    started_here = False
    if not _stage0_or_agent_running():
        log = open(agent_dir / "agent.log", "ab")  # noqa: SIM115 - the child holds it
        subprocess.Popen([sys.executable, "-m", "instance_agent", "--code-dir", args.code_dir, "serve"],
                         env=container_environ(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd="/")
        log.close()
        started_here = True
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            reply = inbox.request(agent_dir, "status", timeout=min(5.0, args.timeout))
            break
        except inbox.AgentUnavailable:
            if time.monotonic() > deadline:
                raise
    reply["started_here"] = started_here
    print(json.dumps(reply))
    return 0


def _stage0_or_agent_running() -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(cmdline)
        if b"stage0.py" in text or (b"instance_agent" in text and b"serve" in cmdline):
            return True
    return False


def _attach(args) -> int:
    from instance_agent.viewer import follow

    return follow(Path(args.code_dir), _agent_dir())


def _onstart(_args) -> int:
    from instance_agent.onstart import onstart_script

    sys.stdout.write(onstart_script())
    return 0


def _sync(args) -> int:
    from instance_agent.artifacts import sync_artifacts
    from instance_agent.rclone import Bucket

    policy = load_policy(args.policy or default_policy_path(args.code_dir))
    report = sync_artifacts(Bucket.from_env(), policy.code_path, policy.artifact_prefix(),
                            include_checkpoints=not args.no_checkpoints)
    print(json.dumps(report.to_dict()))
    return 0


def _fetch_data(args) -> int:
    from instance_agent.datafetch import DataSpec, fetch_data
    from instance_agent.rclone import Bucket

    spec = DataSpec.from_config(args.config)
    report = fetch_data(Bucket.from_env(), spec, Path(args.dest), transfers=args.transfers,
                        multi_thread_streams=args.multi_thread_streams, multi_thread_cutoff=args.multi_thread_cutoff)
    print(json.dumps(report.to_dict()))
    return 0


def _write_config(args) -> int:
    from instance_agent.runconfig import RUN_CONFIG, write_run_config

    overrides = json.loads(args.overrides)
    if not isinstance(overrides, dict):
        raise ValueError(f"--overrides must be a JSON object of dotted keys to values, got {args.overrides!r}")
    changed = write_run_config(Path(args.config), overrides, Path(args.code_dir) / RUN_CONFIG)
    print(json.dumps({"config": RUN_CONFIG, "changed": changed, "overrides": overrides}))
    return 0


def _wait_started(args) -> int:
    from instance_agent.heartbeat import HEARTBEAT_NAME
    from instance_agent.started import wait_started

    code_dir = Path(args.code_dir)
    beat = wait_started(code_dir / HEARTBEAT_NAME, code_dir / PIPELINE_LOG, timeout=args.timeout)
    print(json.dumps(beat.to_dict()))
    return 0


def _check_policy(args) -> int:
    print(json.dumps(load_policy(args.path).to_dict()))
    return 0


def _install_requirements(args) -> int:
    from instance_agent.requirements import install_requirements

    code_dir = Path(args.code_dir)
    print(json.dumps(install_requirements(code_dir, code_dir / STATE_DIR).to_dict()))
    return 0


def _rclone(args) -> int:
    """Replace this process with rclone, the bucket configured from the environment (for people, not roles)."""
    from instance_agent.rclone import Bucket

    bucket = Bucket.from_env()
    os.execvpe(bucket.binary, [bucket.binary, *args.rclone_args], dict(bucket.env))
    return 127  # not reached


def _log_to(path: Path, *, stdout: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instance_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--code-dir", default=DEFAULT_CODE_DIR, help="the run's code dir (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the agent: lease, supervision, ending the billing (started by onstart)")
    serve.add_argument("--tick", type=float, default=1.0, help="seconds between the agent's checks")
    serve.set_defaults(handler=_serve)

    sup = sub.add_parser("supervise", help="run the pipeline under the policy, then sync (the agent starts it)")
    sup.add_argument("--policy", help="policy file (default: <code dir>/.vastkit/supervisor.json)")
    sup.set_defaults(handler=_supervise)

    call = sub.add_parser("call", help="ask the agent: status | renew | start-run | stop-run")
    call.add_argument("op")
    call.add_argument("--args", help='JSON object, e.g. {"seconds": 1800} or {"policy": "...", "restart": false}')
    call.add_argument("--timeout", type=float, default=30.0)
    call.set_defaults(handler=_call)

    install = sub.add_parser("install-agent", help="let stage 0 become the agent; wait until it answers")
    install.add_argument("--timeout", type=float, default=60.0)
    install.set_defaults(handler=_install_agent)

    attach = sub.add_parser("attach", help="follow the run's log (what tmux session training shows)")
    attach.set_defaults(handler=_attach)

    onstart = sub.add_parser("onstart", help="print the onstart script (static; launch sends it)")
    onstart.set_defaults(handler=_onstart)

    sync = sub.add_parser("sync", help="copy logs, metrics and checkpoints to s3://$B2_BUCKET/runs/<run>/ now")
    sync.add_argument("--policy")
    sync.add_argument("--no-checkpoints", action="store_true", help="leave checkpoints out (faster)")
    sync.set_defaults(handler=_sync)

    fetch = sub.add_parser("fetch-data", help="fetch the config's data files from the bucket, checksummed")
    fetch.add_argument("--config", required=True, help="repo-relative config path, e.g. configs/burgers32.yaml")
    fetch.add_argument("--dest", required=True, help="data directory")
    fetch.add_argument("--transfers", type=int, default=8, help="files in parallel")
    fetch.add_argument("--multi-thread-streams", type=int, default=8, help="streams per large file")
    fetch.add_argument("--multi-thread-cutoff", default="64M", help="size from which a file is split in streams")
    fetch.set_defaults(handler=_fetch_data)

    config = sub.add_parser("write-config", help="write .vastkit/run-config.yaml: a config with dotted overrides")
    config.add_argument("--config", required=True, help="repo-relative base config")
    config.add_argument("--overrides", required=True, help='JSON object, e.g. {"operator.lr": 0.0003}')
    config.set_defaults(handler=_write_config)

    started = sub.add_parser("wait-started", help="wait until the pipeline printed PIPELINE STARTED")
    started.add_argument("--timeout", type=float, default=300.0)
    started.set_defaults(handler=_wait_started)

    check = sub.add_parser("check-policy", help="validate a policy file (the role's template validation)")
    check.add_argument("path")
    check.set_defaults(handler=_check_policy)

    reqs = sub.add_parser("install-requirements",
                          help="install pyproject's runtime requirements (torch pinned to the installed one) and the "
                               "project itself (editable, no deps) into this interpreter's environment")
    reqs.set_defaults(handler=_install_requirements)

    rclone = sub.add_parser("rclone", help="run rclone with the bucket as remote 'b2:' (config from B2_* env)")
    rclone.add_argument("rclone_args", nargs=argparse.REMAINDER)
    rclone.set_defaults(handler=_rclone)
    return parser


if __name__ == "__main__":
    sys.exit(main())
