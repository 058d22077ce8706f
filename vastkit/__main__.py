"""After launch: `python -m vastkit runs | follow RUN | results RUN` (docs/runbooks/day2.md).

The Vast key and URL come as for every vastkit caller (VAST_API_KEY or `vastai set api-key`, VAST_URL); the
bucket from the controller's B2_* (what setup_env.yml pushed into the account); the SSH key and the
per-instance known_hosts directory default to the launch's own defaults (`ssh_key_file`, `known_hosts_dir`).
Exit codes: 0 done (follow: the run succeeded), 1 the run failed or an API/bucket error, 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from run_contract import SUCCEEDED, BucketSettingsError
from vastkit.errors import VastAPIError, VastConfigError
from vastkit.follow import FollowSettings, follow
from vastkit.results import ResultsRequest, fetch, report
from vastkit.runs import Selector, Sources, collect, render
from vastkit.runs_bucket import BucketError, RunBucket
from vastkit.runs_remote import SshSettings


def _ssh(args: argparse.Namespace) -> SshSettings:
    default = SshSettings()
    return SshSettings(
        key_file=Path(args.ssh_key).expanduser() if args.ssh_key else default.key_file,
        known_hosts_dir=(
            Path(args.known_hosts_dir).expanduser() if args.known_hosts_dir else default.known_hosts_dir
        ),
    )


def cmd_runs(args: argparse.Namespace) -> int:
    selector = Selector.parse(
        run=args.run,
        instance_id=args.id,
        label_prefix=args.label_prefix,
        older_than=args.older_than,
        everyone=args.all,
    )
    sources = Sources.from_env(_ssh(args), use_bucket=not args.no_bucket)
    details = args.detail or args.lines > 0
    listing = collect(sources, selector, log_lines=args.lines, gpu=details, limit=args.limit)
    print("\n".join(render(listing, selector, details=details, log_lines=args.lines, bucket=sources.bucket)))
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    sources = Sources.from_env(_ssh(args))
    settings = FollowSettings(poll_s=args.poll, timeout_s=args.timeout, logs=not args.no_logs)
    try:
        final = follow(sources, args.run, settings)
    except KeyboardInterrupt:
        print(f"\nstopped following {args.run}; the run goes on (python -m vastkit follow {args.run} again)")
        return 130
    return 0 if (final or {}).get("state") == SUCCEEDED else 1


def cmd_results(args: argparse.Namespace) -> int:
    request = ResultsRequest(
        run=args.run,
        into=Path(args.into or Path("results") / args.run),
        checkpoints=not args.no_checkpoints,
        logs=args.logs,
        wandb=args.wandb,
    )
    bucket = RunBucket.from_env()
    done = fetch(bucket, request)
    print("\n".join(report(bucket, request, done)))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m vastkit", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    ssh = argparse.ArgumentParser(add_help=False)
    ssh.add_argument("--ssh-key", help="the launch key (default: launch.yml's ssh_key_file default)")
    ssh.add_argument("--known-hosts-dir", help="one known_hosts file per instance id (default: launch.yml's)")

    runs = sub.add_parser("runs", parents=[ssh], help="this project's runs, live and finished, in one table")
    pick = runs.add_mutually_exclusive_group()
    pick.add_argument("--run", help="one run (and its fleet RUN-1..N)")
    pick.add_argument("--id", help="one instance id")
    pick.add_argument("--label-prefix", help="runs whose name starts with this")
    runs.add_argument("--older-than", help="only runs older than this age (6h, 90m)")
    runs.add_argument("--all", action="store_true", help="also instances this project did not create")
    runs.add_argument("--detail", action="store_true", help="a few lines per run after the table")
    runs.add_argument("--lines", type=int, default=0, help="with the detail, the newest log's last N lines")
    runs.add_argument("--limit", type=int, default=20, help="finished runs shown, newest first (default 20)")
    runs.add_argument("--no-bucket", action="store_true", help="live runs only")
    runs.set_defaults(func=cmd_runs)

    fol = sub.add_parser(
        "follow", parents=[ssh], help="a run's progress and log until it ends, then its summary"
    )
    fol.add_argument("run")
    fol.add_argument("--poll", type=float, default=5.0, help="seconds between polls (default 5)")
    fol.add_argument("--timeout", type=float, default=FollowSettings().timeout_s, help="give up after (s)")
    fol.add_argument("--no-logs", action="store_true", help="progress lines only")
    fol.set_defaults(func=cmd_follow)

    res = sub.add_parser("results", help="fetch a run's metrics, plots and final checkpoints from the bucket")
    res.add_argument("run")
    res.add_argument("--into", help="folder (default ./results/RUN)")
    res.add_argument("--no-checkpoints", action="store_true", help="metrics and plots only")
    res.add_argument("--logs", action="store_true", help="also the logs")
    res.add_argument("--wandb", action="store_true", help="also the offline W&B directory (then wandb sync)")
    res.set_defaults(func=cmd_results)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, VastConfigError, BucketSettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VastAPIError as exc:
        if exc.status is None:  # no answer at all: a transport error, not the API's word
            print(
                f"error: the Vast API did not answer ({exc.error}: {exc.msg}); check VAST_URL and the network",
                file=sys.stderr,
            )
        elif exc.status in (401, 403):
            print(f"error: {exc}; check VAST_API_KEY (or run vastai set api-key)", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BucketError, LookupError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
