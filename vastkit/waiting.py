"""Waiting for an instance to be usable: status polling, then a real SSH handshake."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import paramiko

from vastkit.client import VastAPI
from vastkit.errors import VastAPIError
from vastkit.records import Instance
from vastkit.retry import Deadline

log = logging.getLogger(__name__)


class InstanceWaitError(RuntimeError):
    """The instance did not become usable. `reason` is one of: gone, failed, timeout, ssh."""

    def __init__(self, instance_id: int, reason: str, detail: str, instance: Instance | None = None):
        self.instance_id = instance_id
        self.reason = reason
        self.instance = instance
        super().__init__(f"instance {instance_id}: {detail}")


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str = "root"
    key_file: str | None = None


def wait_until_running(api: VastAPI, instance_id: int, deadline: Deadline, poll: float = 2.0) -> Instance:
    """Poll until `actual_status` is running with an SSH address; fail fast on states that never recover."""
    last: Instance | None = None
    while True:
        last = api.get_instance(instance_id)
        if last is None:
            raise InstanceWaitError(instance_id, "gone", "no longer exists (destroyed or never placed)")
        if last.is_failed:
            raise InstanceWaitError(instance_id, "failed", f"is {last.actual_status}: {last.status_msg or ''}", last)
        if last.is_running and last.ssh_address():
            return last
        if deadline.expired:
            raise InstanceWaitError(
                instance_id, "timeout",
                f"still {last.actual_status or 'provisioning'} after {deadline.seconds:.0f}s "
                f"({last.status_msg or 'no status message'})", last)
        deadline.sleep(poll)


def ssh_handshake(target: SshTarget, timeout: float = 10.0) -> None:
    """Log in with the launch key and run nothing: proves the key is in place (a TCP probe would not)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # new machine, new host key; we only probe.
    try:
        client.connect(
            target.host, port=target.port, username=target.user, key_filename=target.key_file,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            allow_agent=target.key_file is None, look_for_keys=target.key_file is None,
        )
    finally:
        client.close()


def wait_for_ssh(target: SshTarget, deadline: Deadline, poll: float = 1.0) -> None:
    last_error = "not tried"
    while True:
        try:
            ssh_handshake(target, timeout=max(1.0, min(10.0, deadline.remaining)))
            return
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.expired:
            raise InstanceWaitError(0, "ssh", f"SSH to {target.host}:{target.port} not ready after "
                                    f"{deadline.seconds:.0f}s ({last_error})")
        deadline.sleep(poll)


def wait_until_ready(
    api: VastAPI, instance_id: int, *, timeout: float, key_file: str | None = None, poll: float = 2.0
) -> Instance:
    """Running and SSH-reachable with `key_file`, within `timeout` seconds overall."""
    deadline = Deadline(timeout)
    instance = wait_until_running(api, instance_id, deadline, poll)
    host, port = instance.ssh_address()
    try:
        wait_for_ssh(SshTarget(host, port, key_file=key_file), deadline, poll=min(poll, 1.0))
    except InstanceWaitError as exc:
        raise InstanceWaitError(instance_id, "ssh", str(exc).split(": ", 1)[-1], instance) from None
    except VastAPIError:
        raise
    return instance
