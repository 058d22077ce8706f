"""`python -m vastkit.supervisor <command>` (also installed as `vastkit-supervisor`). Run from the code dir.

Every command takes its secrets from the environment and prints a JSON result on stdout for Ansible.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from vastkit.supervisor.layout import (
    DEFAULT_CODE_DIR,
    PIPELINE_LOG,
    STATE_DIR,
    SUPERVISOR_LOG,
    default_policy_path,
)
from vastkit.supervisor.policy import PolicyError, load_policy


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (PolicyError, ValueError, RuntimeError) as exc:  # our errors say what to do: no traceback for them
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from vastkit.supervisor.supervisor import Supervisor

    policy = load_policy(args.policy or default_policy_path(args.code_dir))
    _log_to(policy.code_path / SUPERVISOR_LOG)
    return Supervisor(policy, environ=os.environ).run()


def _sync(args) -> int:
    from vastkit.supervisor.artifacts import sync_artifacts
    from vastkit.supervisor.rclone import Bucket

    policy = load_policy(args.policy or default_policy_path(args.code_dir))
    report = sync_artifacts(Bucket.from_env(), policy.code_path, policy.artifact_prefix(),
                            include_checkpoints=not args.no_checkpoints)
    print(json.dumps(report.to_dict()))
    return 0


def _fetch_data(args) -> int:
    from vastkit.supervisor.datafetch import DataSpec, fetch_data
    from vastkit.supervisor.rclone import Bucket

    spec = DataSpec.from_config(args.config)
    report = fetch_data(Bucket.from_env(), spec, Path(args.dest), transfers=args.transfers,
                        multi_thread_streams=args.multi_thread_streams, multi_thread_cutoff=args.multi_thread_cutoff)
    print(json.dumps(report.to_dict()))
    return 0


def _write_config(args) -> int:
    from vastkit.supervisor.runconfig import RUN_CONFIG, write_run_config

    overrides = json.loads(args.overrides)
    if not isinstance(overrides, dict):
        raise ValueError(f"--overrides must be a JSON object of dotted keys to values, got {args.overrides!r}")
    changed = write_run_config(Path(args.config), overrides, Path(args.code_dir) / RUN_CONFIG)
    print(json.dumps({"config": RUN_CONFIG, "changed": changed, "overrides": overrides}))
    return 0


def _wait_started(args) -> int:
    from vastkit.supervisor.heartbeat import HEARTBEAT_NAME
    from vastkit.supervisor.started import wait_started

    code_dir = Path(args.code_dir)
    beat = wait_started(code_dir / HEARTBEAT_NAME, code_dir / PIPELINE_LOG, timeout=args.timeout)
    print(json.dumps(beat.to_dict()))
    return 0


def _check_policy(args) -> int:
    print(json.dumps(load_policy(args.path).to_dict()))
    return 0


def _install_requirements(args) -> int:
    from vastkit.supervisor.requirements import install_requirements

    code_dir = Path(args.code_dir)
    print(json.dumps(install_requirements(code_dir, code_dir / STATE_DIR).to_dict()))
    return 0


def _rclone(args) -> int:
    """Replace this process with rclone, the bucket configured from the environment (for people, not roles)."""
    from vastkit.supervisor.rclone import Bucket

    bucket = Bucket.from_env()
    os.execvpe(bucket.binary, [bucket.binary, *args.rclone_args], dict(bucket.env))
    return 127  # not reached


def _log_to(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s supervisor %(levelname)s %(message)s")
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(path)]
    for handler in handlers:
        handler.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vastkit.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--code-dir", default=DEFAULT_CODE_DIR, help="the run's code dir (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline under the policy, then sync and (auto_shutdown) destroy")
    run.add_argument("--policy", help="policy file (default: <code dir>/.vastkit/supervisor.json)")
    run.set_defaults(handler=_run)

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
