"""Where the supervisor keeps its files under the code dir. Standard library only: the bootstrap imports it
before the project's requirements are installed."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CODE_DIR = "/workspace/universal_simulator"
STATE_DIR = ".vastkit"  # policy, lock, requirements, tree stamp: nothing secret
PIPELINE_LOG = "logs/pipeline.log"
SUPERVISOR_LOG = "logs/supervisor.log"


def default_policy_path(code_dir: str | Path) -> Path:
    return Path(code_dir) / STATE_DIR / "supervisor.json"
