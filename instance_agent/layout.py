"""Where the instance side keeps its files: the contract's names as paths. Standard library only: bootstrap
imports it before the project's requirements are installed."""

from __future__ import annotations

from pathlib import Path

import run_contract as contract

DEFAULT_CODE_DIR = contract.CODE_DIR
STATE_DIR = contract.STATE_DIR
PIPELINE_LOG = contract.PIPELINE_LOG
SUPERVISOR_LOG = contract.SUPERVISOR_LOG


def default_policy_path(code_dir: str | Path) -> Path:
    return Path(code_dir) / contract.POLICY_FILE
