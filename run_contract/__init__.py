"""The instance contract: what the controller, the instance agent and the pipeline agree on, stated once.

Standard library only: the controller, the onstart stage, the agent, the pipeline and the tests import it, and
`python -m run_contract ansible-vars` hands the same values to Ansible (`playbooks/vars/contract.yml`, checked
against this module by a test). docs/instance-contract.md describes it; it does not restate it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# ----- paths on the instance ------------------------------------------------------------------------------
CODE_DIR = "/workspace/universal_simulator"  # the code, and the run dir (logs/, checkpoints/, data/ inside)
VENV = "/venv/main"  # the image's venv: torch preinstalled there
PYTHON = f"{VENV}/bin/python"
# The agent's own state: outside the code dir (a git clone needs an empty dir), on the instance's disk (a
# container restart keeps it). Root-only; no secrets are ever written here.
AGENT_DIR = "/workspace/.instance_agent"
TMUX_SESSION = "training"

# Files under the code dir (relative).
STATE_DIR = ".vastkit"  # policy, requirements, tree stamp: nothing secret
POLICY_FILE = f"{STATE_DIR}/supervisor.json"
RUN_CONFIG_FILE = f"{STATE_DIR}/run-config.yaml"
TREE_SHA_FILE = f"{STATE_DIR}/tree.sha256"
TREE_FILES_FILE = f"{STATE_DIR}/tree.files"
SNAPSHOTS_DIR = ".sync-snapshots"
HEARTBEAT_FILE = "heartbeat.json"  # the supervisor's word on the run
STATUS_FILE = "status.json"  # the pipeline's word on its current stage
PIPELINE_LOCK_FILE = f"{STATE_DIR}/pipeline.lock"  # held by the one pipeline of this run dir
LOGS_DIR = "logs"
PIPELINE_LOG = f"{LOGS_DIR}/pipeline.log"
SUPERVISOR_LOG = f"{LOGS_DIR}/supervisor.log"
AGENT_LOG = f"{LOGS_DIR}/agent.log"  # a copy of the agent's log, synced with the run
DATA_DIR = "data"

# ----- the bucket (s3://$B2_BUCKET/...) -------------------------------------------------------------------
RUNS_PREFIX = "runs"  # runs/<run>/{logs/,metrics/,checkpoints/,wandb/,status.json,heartbeat.json}
DATASETS_PREFIX = "datasets"  # datasets/<prefix>/ (the config's data.remote_prefix)


def run_prefix(run_name: str) -> str:
    return f"{RUNS_PREFIX}/{run_name}"


# ----- environment names ----------------------------------------------------------------------------------
B2_REQUIRED_ENV = ("B2_KEY_ID", "B2_APP_KEY", "B2_S3_ENDPOINT", "B2_BUCKET")
B2_OPTIONAL_ENV = ("B2_S3_REGION",)
B2_ENV = B2_REQUIRED_ENV + B2_OPTIONAL_ENV
WANDB_ENV = ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY")
CONTAINER_ID_ENV = "CONTAINER_ID"
CONTAINER_KEY_ENV = "CONTAINER_API_KEY"
ACCOUNT_KEY_ENV = "VAST_API_KEY"
# Secrets: never in onstart, task output, logs, process arguments, files we write, or the bucket.
SECRET_ENV = ("WANDB_API_KEY", "B2_KEY_ID", "B2_APP_KEY", CONTAINER_KEY_ENV, ACCOUNT_KEY_ENV)
# Set at create (visible in the API's extra_env, so never secret):
LEASE_ENV = "INSTANCE_AGENT_LEASE_S"  # seconds the instance may wait for its run before it destroys itself
OWNER_ENV = "VASTKIT_OWNER"  # marks the instances this project created (the reaper takes only those)
OWNER_VALUE = "universal_simulator"
RUN_NAME_ENV = "TRAIN_RUN_NAME"
DEFAULT_LEASE_S = 1800
# What the pipeline is told (the supervisor sets them).
PIPELINE_ENV = ("TRAIN_CONFIG", "TRAIN_STAGE", "RESET_CACHE", "TRAIN_RUN_DIR", "TRAIN_DATA_DIR", RUN_NAME_ENV)
# Optional, non-secret launch facts the pipeline records (W&B group, tags and config) when they are set:
# a fleet's or sweep's runs are named <base>-<i> (vastkit.planning.run_names) and share RUN_GROUP_ENV=<base>.
RUN_GROUP_ENV = "TRAIN_RUN_GROUP"
LAUNCH_FACTS_ENV = {  # fact -> env name
    "gpu": "TRAIN_GPU_NAME",  # the rented offer's GPU, e.g. "RTX 4090"
    "num_gpus": "TRAIN_NUM_GPUS",
    "dph": "TRAIN_DPH",  # $/h of the rented offer
    "interruptible": "TRAIN_INTERRUPTIBLE",  # 1: an interruptible (bid) instance, 0: on-demand
    "commit": "TRAIN_GIT_COMMIT",  # the launching commit
    "instance_id": CONTAINER_ID_ENV,
}
SEED_ENV = "TRAIN_SEED"  # overrides the config's seed (a replicate of the same config)



class BucketSettingsError(ValueError):
    """The B2_* environment does not describe a bucket; says which variables to set."""


@dataclass(frozen=True)
class BucketSettings:
    """The bucket, as the one parser of B2_* reads it (rclone on the instance, boto3 in the pipeline)."""

    key_id: str = field(repr=False)
    app_key: str = field(repr=False)
    endpoint: str  # a URL; a bare host (what Vast's env-var value pattern allows) gets https://
    region: str
    bucket: str


_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?/?$")


def bucket_settings(environ: Mapping[str, str]) -> BucketSettings:
    missing = [name for name in B2_REQUIRED_ENV if not (environ.get(name) or "").strip()]
    if missing:
        raise BucketSettingsError(
            f"missing {', '.join(missing)} in the environment; set them once as Vast account env-vars "
            "(ansible-playbook playbooks/setup_env.yml) so every instance gets them")
    endpoint = environ["B2_S3_ENDPOINT"].strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    if not _ENDPOINT.match(endpoint):
        raise BucketSettingsError(f"B2_S3_ENDPOINT must be a host or URL such as s3.us-west-004.backblazeb2.com, "
                                  f"got {endpoint!r}")
    region = (environ.get("B2_S3_REGION") or "").strip()
    if not region:
        host = endpoint.split("://", 1)[1].split("/", 1)[0]
        match = re.match(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$", host)
        region = match.group(1) if match else "us-east-1"
    return BucketSettings(key_id=environ["B2_KEY_ID"].strip(), app_key=environ["B2_APP_KEY"].strip(),
                          endpoint=endpoint, region=region, bucket=environ["B2_BUCKET"].strip())


# ----- the run name ---------------------------------------------------------------------------------------
MAX_RUN_NAME = 128
RUN_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_RUN_NAME - 1}}}$"
_RUN_NAME = re.compile(RUN_NAME_PATTERN)


def run_name_error(name: object) -> str | None:
    """Why `name` is no run name (the instance label, the bucket prefix, the W&B id), or None."""
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        return (f"run name {name!r} must be 1-{MAX_RUN_NAME} characters of letters, digits, '.', '_', '-', "
                "starting with a letter or digit")
    return None


# ----- stages ---------------------------------------------------------------------------------------------
STAGES = ("autoencoder", "cache", "operator", "diffusion", "distill", "evaluate")

# ----- run states (heartbeat.json `state`) and the supervisor's phases ------------------------------------
STARTING, RUNNING = "starting", "running"
SUCCEEDED, FAILED, BUDGET_EXCEEDED, INTERRUPTED = "succeeded", "failed", "budget_exceeded", "interrupted"
RUN_STATES = (STARTING, RUNNING, SUCCEEDED, FAILED, BUDGET_EXCEEDED, INTERRUPTED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, BUDGET_EXCEEDED, INTERRUPTED})
PHASE_PIPELINE, PHASE_SYNCING, PHASE_ENDING, PHASE_DONE = "pipeline", "syncing", "ending", "done"
PHASES = (PHASE_PIPELINE, PHASE_SYNCING, PHASE_ENDING, PHASE_DONE)
# How the agent ended the billing (heartbeat `ending`): destroyed, stopped (disk kept), kept running.
DESTROYED, STOPPED, KEPT = "destroyed", "stopped", "kept"
ENDINGS = (DESTROYED, STOPPED, KEPT)
STALE_HEARTBEAT_S = 120.0
# The supervisor's exit code says how the run ended even when no heartbeat could be written (a full disk).
_EXIT = {SUCCEEDED: 0, FAILED: 10, BUDGET_EXCEEDED: 11, INTERRUPTED: 12}
_UNSYNCED = 20


def supervisor_exit_code(state: str, synced: bool | None) -> int:
    return _EXIT.get(state, _EXIT[FAILED]) + (0 if synced else _UNSYNCED)


def parse_supervisor_exit(code: int | None) -> tuple[str, bool] | None:
    """(final state, synced) from a supervisor's exit code; None for any other code (a crash, a signal)."""
    for state, base in _EXIT.items():
        if code == base:
            return state, True
        if code == base + _UNSYNCED:
            return state, False
    return None  # a heartbeat older than this is flagged stale (the supervisor writes every 10 s)

# ----- the pipeline's marker lines ------------------------------------------------------------------------
_STARTED = re.compile(r"PIPELINE STARTED\b(?P<fields>.*)$")
_FAILED = re.compile(r"PIPELINE FAILED\b\s*(?:stage=(?P<stage>[^\s:]+):?)?\s*(?P<msg>.*)$")
_FINISHED = re.compile(r"PIPELINE FINISHED\b")
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Marker:
    kind: str  # started | finished | failed
    fields: dict[str, str]
    message: str = ""


def started_line(run_name: str, stages: list[str] | tuple[str, ...], wandb: str) -> str:
    """`wandb` is a URL, an offline dir or `disabled`."""
    return f"PIPELINE STARTED run={run_name} stages={','.join(stages)} wandb={wandb}"


def finished_line() -> str:
    return "PIPELINE FINISHED ok"


def failed_line(stage: str, message: str) -> str:
    return f"PIPELINE FAILED stage={stage}: {message}"


def parse_marker(line: str) -> Marker | None:
    """The marker in `line`, if any: the inverse of the three `*_line` functions above."""
    if match := _STARTED.search(line):
        return Marker("started", dict(_FIELD.findall(match.group("fields"))))
    if match := _FAILED.search(line):
        fields = {"stage": match.group("stage")} if match.group("stage") else {}
        return Marker("failed", fields, match.group("msg").strip())
    if _FINISHED.search(line):
        return Marker("finished", {})
    return None


def ansible_vars() -> dict:
    """What Ansible needs of the contract, as `contract.*` variables."""
    return {
        "contract": {
            "code_dir": CODE_DIR,
            "venv": VENV,
            "python": PYTHON,
            "agent_dir": AGENT_DIR,
            "tmux_session": TMUX_SESSION,
            "policy_file": POLICY_FILE,
            "run_config_file": RUN_CONFIG_FILE,
            "heartbeat_file": HEARTBEAT_FILE,
            "status_file": STATUS_FILE,
            "logs_dir": LOGS_DIR,
            "pipeline_log": PIPELINE_LOG,
            "runs_prefix": RUNS_PREFIX,
            "b2_required_env": list(B2_REQUIRED_ENV),
            "b2_optional_env": list(B2_OPTIONAL_ENV),
            "wandb_env": list(WANDB_ENV),
            "secret_env": list(SECRET_ENV),
            "lease_env": LEASE_ENV,
            "owner_env": OWNER_ENV,
            "owner_value": OWNER_VALUE,
            "run_name_env": RUN_NAME_ENV,
            "run_group_env": RUN_GROUP_ENV,
            "launch_facts_env": dict(LAUNCH_FACTS_ENV),
            "default_lease_s": DEFAULT_LEASE_S,
            "run_name_pattern": RUN_NAME_PATTERN,
            "max_run_name": MAX_RUN_NAME,
            "stages": list(STAGES),
            "run_states": list(RUN_STATES),
            "final_states": sorted(FINAL_STATES),
            "stale_heartbeat_s": STALE_HEARTBEAT_S,
        }
    }
