"""What the supervisor is told to do: one typed, validated policy file, rendered by the autoshutdown role.

The file holds no secrets (they reach the supervisor through its environment only), so it may be read,
printed and synced with the run's artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import run_contract as contract

# Names that look like credentials are refused in pipeline_env: those belong in the environment.
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PolicyError(ValueError):
    """The policy file is malformed; the message names the key and what is allowed."""


@dataclass(frozen=True)
class SupervisorPolicy:
    """One run on one instance."""

    run_name: str  # label of the instance; artifacts go to runs/<run_name>/ in the bucket
    train_config: str  # repo-relative config path, e.g. configs/burgers32.yaml
    code_dir: str = contract.CODE_DIR
    python: str = contract.PYTHON  # interpreter that runs the pipeline
    train_stage: str = "all"
    # Pipeline processes, one per GPU: more than 1 starts the pipeline under torchrun (DDP; rank 0 writes).
    nproc_per_node: int = 1
    reset_cache: int = 1
    auto_shutdown: bool = True  # destroy the instance when the pipeline ends (after the sync); false keeps it
    # running after a normal end, but a budget reached or a Ctrl-C still ends GPU billing (stop, disk kept)
    max_runtime_hours: float = 24.0
    max_cost: float | None = None  # USD for this run at `dph`; None: no cost limit
    dph: float | None = None  # $/h of the rented offer, for the cost estimate
    bucket_prefix: str = contract.RUNS_PREFIX  # artifacts go to s3://$B2_BUCKET/<bucket_prefix>/<run_name>/
    heartbeat_every_s: float = 10.0
    sync_every_s: float = 900.0  # periodic log/metrics sync while training; 0 disables it
    stop_grace_s: float = 30.0  # SIGTERM → SIGKILL grace when the budget stops the pipeline
    final_sync_attempts: int = 3  # the final sync is retried (with backoff) this many times in all
    sync_timeout_s: float = 1800.0  # one sync gives up after this long (rclone retries an unreachable bucket)
    # The agent's own ceiling: this long past the budget it kills whatever still runs and ends the billing.
    ceiling_grace_s: float = 900.0
    # Destroy is retried (with backoff, read back) until the API says the instance is gone; after this long
    # of failures the agent also asks for a stop (GPU billing ends, the disk is kept), and keeps trying both.
    destroy_fallback_s: float = 600.0
    restart_limit: int = 3  # a crashed supervisor is restarted (the run resumes) at most this many times
    pipeline_env: dict[str, str] = field(default_factory=dict)  # extra non-secret env, e.g. TRAIN_FAIL_AT_STAGE

    def __post_init__(self) -> None:
        if error := contract.run_name_error(self.run_name):
            raise PolicyError(f"run_name: {error}")
        if not self.train_config or self.train_config.startswith("/") or ".." in Path(self.train_config).parts:
            raise PolicyError(f"train_config: {self.train_config!r} must be a path inside the repo, e.g. configs/x.yaml")
        if self.nproc_per_node < 1:
            raise PolicyError(f"nproc_per_node: must be >= 1 (one pipeline process per GPU of the instance), "
                              f"got {self.nproc_per_node}")
        if self.reset_cache not in (0, 1):
            raise PolicyError(f"reset_cache: expected 0 or 1, got {self.reset_cache}")
        if self.max_runtime_hours <= 0:
            raise PolicyError(f"max_runtime_hours: must be > 0, got {self.max_runtime_hours}")
        if self.max_cost is not None and self.max_cost <= 0:
            raise PolicyError(f"max_cost: must be > 0 (or null for no limit), got {self.max_cost}")
        if self.max_cost is not None and not self.dph:
            raise PolicyError("max_cost: needs dph (the offer's $/h) to estimate the cost; got none")
        for key in ("heartbeat_every_s", "stop_grace_s", "ceiling_grace_s", "destroy_fallback_s",
                    "final_sync_attempts", "sync_timeout_s"):
            if getattr(self, key) <= 0:
                raise PolicyError(f"{key}: must be > 0, got {getattr(self, key)}")
        if self.restart_limit < 0:
            raise PolicyError(f"restart_limit: must be >= 0, got {self.restart_limit}")
        if self.sync_every_s < 0:
            raise PolicyError(f"sync_every_s: must be >= 0 (0 disables), got {self.sync_every_s}")
        for name in self.pipeline_env:
            if not _ENV_NAME.match(name):
                raise PolicyError(f"pipeline_env.{name}: not a valid environment variable name")
            if _SECRET_NAME.search(name):
                raise PolicyError(
                    f"pipeline_env.{name}: looks like a secret; secrets reach the pipeline through the instance's "
                    "environment (Vast account env-vars), never through the policy file")

    @property
    def code_path(self) -> Path:
        return Path(self.code_dir)

    def artifact_prefix(self) -> str:
        return f"{self.bucket_prefix.strip('/')}/{self.run_name}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def policy_from_dict(raw: Any) -> SupervisorPolicy:
    if not isinstance(raw, dict):
        raise PolicyError(f"policy: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(SupervisorPolicy)}
    hints = typing.get_type_hints(SupervisorPolicy)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PolicyError(f"{unknown[0]}: unknown key; allowed: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PolicyError(f"{missing[0]}: required key missing")
    return SupervisorPolicy(**{name: _coerce(hints[name], value, name) for name, value in raw.items()})


def load_policy(path: str | Path) -> SupervisorPolicy:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found (the autoshutdown role renders it)") from None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}: not valid JSON: {exc}") from None
    try:
        return policy_from_dict(raw)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(opt for opt in options if opt is not type(None))
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise PolicyError(f"{key}: expected a mapping of names to strings, got {value!r:.80}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not hint:
        raise PolicyError(f"{key}: expected {hint.__name__}, got {type(value).__name__} ({value!r:.80})")
    return value
