"""Helpers shared by the e2e scenarios and tests (a plain module: `conftest` is not importable by name when
several test folders have one)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools import demo
from tools.chaos import wait_for  # noqa: F401 - one polling helper for the scenarios and the tests
from tools.world import LocalWorld

TINY_PLAN = demo.TINY_PLAN
LONG_CONFIG = "tests/e2e/configs/tiny_long.yaml"
SCENARIO_TIMEOUT_S = 1500


@dataclass
class Record:
    """What a scenario saw, step by step; `error` is set when the scenario itself broke."""

    outputs: list[str] = field(default_factory=list)  # Ansible output of every playbook it ran
    facts: dict = field(default_factory=dict)
    error: BaseException | None = None

    def playbook(self, result) -> str:
        self.outputs.append(result.stdout)
        return result.stdout


def recap(output: str, host: str) -> dict[str, int]:
    """The PLAY RECAP counters of `host` in an ansible-playbook output."""
    match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no recap line for {host}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def changed_tasks(output: str, host: str) -> list[str]:
    """Names of the tasks that reported `changed` for `host` (to say which, when there should be none)."""
    names, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]", 1)[0]
        elif line.startswith(f"changed: [{host}"):
            names.append(task)
    return names


def bucket_json(world: LocalWorld, key: str) -> dict:
    return json.loads(world.s3.read(key))


def record_of(scenarios: dict[str, Record], name: str) -> Record:
    """A scenario's record; what broke the scenario fails the test asking for it, with the last output."""
    if name not in scenarios:
        pytest.skip(f"scenario {name} not chosen (E2E_SCENARIOS)")
    rec = scenarios[name]
    if rec.error is not None:
        raise AssertionError(f"scenario {name} broke: {rec.error!r}\n{(rec.outputs or [''])[-1][-4000:]}") \
            from rec.error
    return rec


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)
