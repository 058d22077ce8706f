"""Shared pytest fixtures: a running vast_emulator (real HTTP, instances with real sshd) and an SSH keypair.

- ``emulator`` (session): one emulator for the whole run; the ``ssh_keypair`` is registered on its account,
  so every instance created through it accepts that key. Use ``emulator.reset_faults()`` after fault tests.
- ``fresh_emulator`` (function): a private emulator for tests that need an untouched state.
Both stop the emulator at the end and fail if any instance process was left running.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vast_emulator.testing import EmulatorHandle, SshKeyPair, make_ssh_keypair, running_emulator


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> SshKeyPair:
    return make_ssh_keypair(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, ssh_keypair: SshKeyPair) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("emulator") / "state", loading_delay=0.3) as handle:
        handle.register_ssh_key(ssh_keypair.public_key)
        yield handle


@pytest.fixture
def fresh_emulator(tmp_path_factory: pytest.TempPathFactory, ssh_keypair: SshKeyPair) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("fresh-emulator") / "state", loading_delay=0.3) as handle:
        handle.register_ssh_key(ssh_keypair.public_key)
        yield handle
