"""One local world for every e2e test: the Vast.ai emulator, an S3 server for the bucket, the account's
env-vars pushed with setup_env.yml and a tiny dataset made with the project's solver and uploaded, exactly
as `make demo` does it (tools.demo.prepare), only smaller.

The scenarios are slow mostly because each waits on a run; they are started side by side in threads by one
session fixture (`scenarios`) and each test asserts on its own scenario's record.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator

import pytest
from e2e_support import SCENARIO_TIMEOUT_S, TINY_PLAN, Record

from tools import demo
from tools.world import LocalWorld, local_world


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[LocalWorld]:
    with local_world(tmp_path_factory.mktemp("world"), log=lambda *_: None, copies=8) as w:
        demo.prepare(w, TINY_PLAN, say=lambda *_: None)
        yield w


@pytest.fixture(scope="session")
def scenarios(world) -> dict[str, Record]:
    """Run every scenario of tests/e2e/scenarios.py at once; {name: Record}."""
    from scenarios import SCENARIOS

    # E2E_SCENARIOS=crash,budget runs only those (for working on one); the others' tests are skipped.
    chosen = [n for n in os.environ.get("E2E_SCENARIOS", "").split(",") if n] or list(SCENARIOS)
    records = {name: Record() for name in chosen}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = {pool.submit(SCENARIOS[name], world, records[name]): name for name in chosen}
        for future in concurrent.futures.as_completed(futures, timeout=SCENARIO_TIMEOUT_S):
            error = future.exception()
            if error is not None:
                records[futures[future]].error = error
    _write_chaos_table(records)
    return records


def _write_chaos_table(records: dict[str, Record]) -> None:
    """E2E_CHAOS_TABLE=FILE: the safety scenarios' table (as `make chaos` writes it) from this session's runs."""
    target = os.environ.get("E2E_CHAOS_TABLE")
    if not target:
        return
    from tools.chaos import table

    results = {name: rec.facts["chaos"] for name, rec in records.items() if "chaos" in rec.facts}
    for name, rec in records.items():
        if "chaos" in rec.facts and rec.error is not None:
            results[name].error = rec.error
    with open(target, "w") as handle:
        handle.write(table(results))
