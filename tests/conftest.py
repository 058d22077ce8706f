"""Shared pytest fixtures: a running vast_emulator (real HTTP, instances with real sshd) and an SSH keypair.

- ``emulator`` (session): one emulator for the whole run; the ``ssh_keypair`` is registered on its account,
  so every instance created through it accepts that key. Use ``emulator.reset_faults()`` after fault tests.
- ``fresh_emulator`` (function): a private emulator for tests that need an untouched state.
Both stop the emulator at the end and fail if any instance process was left running.

Both enforce Vast's rate limits at ``VASTKIT_PACING_SCALE`` times Vast's intervals (default 0.1, see
``vast_emulator.testing.TEST_RATE_LIMIT_SCALE``); every vastkit client of the run (modules and plugins in
ansible-playbook subprocesses too, through the inherited environment) paces at the same scale.
``VASTKIT_PACING_SCALE=1 pytest`` runs the suite against Vast's own limits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vast_emulator.testing import (
    TEST_RATE_LIMIT_SCALE,
    EmulatorHandle,
    SshKeyPair,
    make_ssh_keypair,
    running_emulator,
)

RATE_LIMIT_SCALE = float(os.environ.setdefault("VASTKIT_PACING_SCALE", str(TEST_RATE_LIMIT_SCALE)))


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> SshKeyPair:
    return make_ssh_keypair(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, ssh_keypair: SshKeyPair) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("emulator") / "state", loading_delay=0.3,
                          rate_limit_scale=RATE_LIMIT_SCALE) as handle:
        handle.register_ssh_key(ssh_keypair.public_key)
        yield handle


@pytest.fixture
def fresh_emulator(tmp_path_factory: pytest.TempPathFactory, ssh_keypair: SshKeyPair) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("fresh-emulator") / "state", loading_delay=0.3,
                          rate_limit_scale=RATE_LIMIT_SCALE) as handle:
        handle.register_ssh_key(ssh_keypair.public_key)
        yield handle

