"""Fixtures for the control-plane tests: the repo's ansible tools pointed at the session emulator.

Every test's runs are labelled `ctl-...`; `cleanup` destroys them afterwards so the session emulator stays
usable by other test packages.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ctl_support import Ansible, base_env, instances


@pytest.fixture
def ansible(emulator, ssh_keypair, tmp_path) -> Ansible:
    env = base_env(tmp_path)
    env.update(VAST_URL=emulator.url, VAST_API_KEY=emulator.api_key)
    # The runs' SSH config entries (`ssh <run>`) go to the test's own files, not the user's ~/.ssh/config.
    common = ["-e", f"ssh_key_file={ssh_keypair.private_key}", "-e", f"known_hosts_dir={tmp_path / 'known_hosts'}",
              "-e", f"ssh_config_dir={tmp_path / 'ssh_entries'}", "-e", f"ssh_config_file={tmp_path / 'ssh_config'}",
              "-e", "poll_interval=0.5", "-e", "gpu=any", "-e", "min_reliability=0.9", "-e", "disk=16"]
    return Ansible(env, common)


@pytest.fixture(autouse=True)
def cleanup(request) -> Iterator[None]:
    yield
    if "emulator" not in request.fixturenames:
        return
    emulator = request.getfixturevalue("emulator")
    emulator.reset_faults()
    for row in instances(emulator):
        emulator.destroy(row["id"])
