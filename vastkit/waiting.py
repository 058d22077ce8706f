"""Waiting for an instance to be usable: what its state means, status polling, then a real SSH login.

`phase` is the one reading of an instance's state for a launch, checked in this order:

1. gone: absent, or shown destroyed;
2. stopped: an outbid interruptible (`cur_state == intended_status == next_state == "stopped"`), a user's stop,
   or `actual_status` stopped/frozen. Before failed: a stopped instance may also report `exited`, and it is
   started (or left alone), never destroyed as broken;
3. failed: `exited`/`offline`/`unknown` (never reach running, Vast's docs), or still `created` with
   "OCI runtime create failed" in `status_msg` (the image needs a newer CUDA than the host's driver: it never
   starts, so a wait stops at once and the failover moves on);
4. running: `actual_status` running;
5. pending: everything else (`null`, created, loading, scheduling, rebooting...).

A 429 or 5xx while polling says nothing about the instance: the wait goes on until its deadline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import paramiko

from vastkit.client import VastAPI
from vastkit.errors import VastAPIError
from vastkit.records import FAILED_STATUSES, STOPPED_STATUSES, Instance
from vastkit.retry import Deadline, is_transient

log = logging.getLogger(__name__)

GONE, STOPPED, FAILED, RUNNING, PENDING = "gone", "stopped", "failed", "running", "pending"
OCI_ERROR = "OCI runtime create failed"  # nvidia-container-cli refused the image's CUDA: never starts
DESTROYED_STATES = frozenset({"destroyed", "deleted", "terminated"})
# What an SSH login attempt may raise while sshd is not ready: refused, timed out, a banner then EOF
# (paramiko raises a bare EOFError), a reset.
SSH_NOT_READY = (OSError, EOFError, paramiko.SSHException)


def phase(instance: Instance | None) -> str:
    """What an instance's state means for a launch (see the module docstring for the order)."""
    if instance is None:
        return GONE
    if {instance.actual_status, instance.intended_status, instance.cur_state} & DESTROYED_STATES:
        return GONE
    if instance.is_outbid or instance.intended_status == "stopped" or instance.actual_status in STOPPED_STATUSES:
        return STOPPED
    if instance.actual_status in FAILED_STATUSES or OCI_ERROR in (instance.status_msg or ""):
        return FAILED
    if instance.is_running:
        return RUNNING
    return PENDING


class InstanceWaitError(RuntimeError):
    """The instance did not become usable. `reason` is one of: gone, stopped, failed, timeout, ssh."""

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
    """Poll until running with an SSH address; fail at once on states that never come back (stopped too)."""
    last: Instance | None = None
    last_error: VastAPIError | None = None
    while True:
        try:
            last = api.get_instance(instance_id)
            last_error = None
        except VastAPIError as exc:
            if not is_transient(exc, idempotent=True):
                raise
            last_error = exc  # rate-limited or a 5xx: nothing is known about the instance; keep waiting
        if last_error is None:
            state = phase(last)
            if state == GONE:
                raise InstanceWaitError(instance_id, "gone", "no longer exists (destroyed or never placed)")
            if state in (STOPPED, FAILED):
                raise InstanceWaitError(instance_id, state, f"is {last.actual_status}: {last.status_msg or ''}", last)
            if state == RUNNING and last.ssh_addresses():
                return last
        if deadline.expired:
            if last_error is not None:
                raise InstanceWaitError(instance_id, "timeout", f"the API kept failing for {deadline.seconds:.0f}s "
                                        f"while waiting ({last_error})", last)
            raise InstanceWaitError(
                instance_id, "timeout",
                f"still {(last.actual_status if last else None) or 'provisioning'} after {deadline.seconds:.0f}s "
                f"({(last.status_msg if last else None) or 'no status message'})", last)
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


def first_reachable(instance: Instance, key_file: str | None, timeout: float = 10.0,
                    probe=None) -> tuple[str, int]:
    """Log in on each of the instance's SSH addresses in turn (direct, then Vast's proxy); the first that works.

    Raises the last address's error when none does; an authentication failure is raised at once (the other
    address has the same sshd and the same keys)."""
    probe = probe or (lambda host, port: ssh_handshake(SshTarget(host, port, key_file=key_file), timeout))
    addresses = instance.ssh_addresses()
    if not addresses:
        raise OSError(f"instance {instance.id} shows no SSH address")
    error: BaseException | None = None
    for host, port in addresses:
        try:
            probe(host, port)
            return host, port
        except paramiko.AuthenticationException:
            raise
        except SSH_NOT_READY as exc:
            log.debug("SSH to %s:%s not ready: %s", host, port, exc)
            error = exc
    raise error


def wait_for_ssh(instance: Instance, deadline: Deadline, key_file: str | None = None, poll: float = 1.0) -> Instance:
    """Until a login works on one of the instance's addresses; the record then names that address."""
    last_error = "not tried"
    while True:
        try:
            host, port = first_reachable(instance, key_file, timeout=max(1.0, min(10.0, deadline.remaining)))
            return instance.with_ssh(host, port)
        except SSH_NOT_READY as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.expired:
            tried = ", ".join(f"{h}:{p}" for h, p in instance.ssh_addresses())
            raise InstanceWaitError(instance.id, "ssh", f"SSH ({tried}) not ready after {deadline.seconds:.0f}s "
                                    f"({last_error})", instance)
        deadline.sleep(poll)


def wait_until_ready(
    api: VastAPI, instance_id: int, *, timeout: float, key_file: str | None = None, poll: float = 2.0
) -> Instance:
    """Running and SSH-reachable with `key_file`, within `timeout` seconds overall; the record's `ssh_address()`
    is the address the login worked on (direct, or the proxy where direct is blocked)."""
    deadline = Deadline(timeout)
    instance = wait_until_running(api, instance_id, deadline, poll)
    return wait_for_ssh(instance, deadline, key_file, poll=min(poll, 1.0))
