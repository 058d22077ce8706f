"""Getting one labelled instance running: create with failover, start, wait, destroy-and-verify.

The failover follows SkyPilot's Vast provider: on an offer that is gone, an instance stuck in `loading`, or
one that lands in a state that never recovers, destroy only what this attempt created, verify it is gone,
exclude that machine and try the next offer. If the cleanup cannot be verified, stop: a retry could create
a duplicate paid instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ansible.module_utils.vast_common import VastAPIError

try:
    from vastkit.records import Instance, Offer
    from vastkit.retry import Deadline
    from vastkit.waiting import InstanceWaitError, SshTarget, wait_for_ssh, wait_until_running
except ImportError:  # vast_common reports the missing package
    pass

DESTROY_VERIFY_S = 60.0
# After a create that failed ambiguously (5xx, timeout), how long the label may take to show up.
LOOKUP_AFTER_AMBIGUOUS_S = 3.0


class ProvisionError(Exception):
    """No usable instance; `attempts` says what happened on each try."""

    def __init__(self, msg: str, attempts: list, *, api_error: dict | None = None):
        super().__init__(msg)
        self.attempts = attempts
        self.api_error = api_error


class CleanupFailed(ProvisionError):
    """An instance this run created could not be shown destroyed. Never retry after this."""


@dataclass(frozen=True)
class CreateSpec:
    """Everything a create sends besides the offer. `env` may hold secrets: never returned or logged."""

    label: str
    image: str
    disk: float
    env: dict = field(repr=False)
    onstart: str | None
    bid_price: float | None
    runtype: str


@dataclass(frozen=True)
class WaitSpec:
    wait: bool
    loading_timeout: float  # per attempt: to reach running and answer SSH
    wait_timeout: float  # overall
    poll: float
    ssh_key_file: str | None


@dataclass
class Attempt:
    """One try, as reported in the module's `attempts`."""

    number: int
    action: str  # create | start | reuse
    offer_id: int | None = None
    machine_id: int | None = None
    dph_total: float | None = None
    instance_id: int | None = None
    outcome: str = "pending"  # running | created | offer_gone | stuck_loading | failed | gone | ssh | error
    detail: str = ""
    destroyed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome:
    instance: Instance | None
    attempts: list = field(default_factory=list)
    changed_ids: list = field(default_factory=list)
    terminated_ids: list = field(default_factory=list)
    offer: Offer | None = None


class Provisioner:
    """One label's lifecycle against one client. Not thread-safe: one per label."""

    def __init__(self, api, wait: WaitSpec, *, search: Callable[[set], list], max_attempts: int,
                 log: Callable[[str], None] = lambda _msg: None, sleep: Callable[[float], None] = time.sleep):
        self.api = api
        self.wait = wait
        self.search = search  # excluded machine ids -> offers, best first
        self.max_attempts = max_attempts
        self.log = log
        self.sleep = sleep

    # -- public ---------------------------------------------------------------------------------------------

    def launch(self, spec: CreateSpec, *, offer_id: int | None = None, outcome: Outcome | None = None,
               excluded_machines: set | None = None, overall: Deadline | None = None) -> Outcome:
        """Create an instance labelled `spec.label` and (if waiting) see it running and SSH-reachable."""
        outcome = outcome or Outcome(instance=None)
        excluded = set(excluded_machines or ())
        tried_offers: set = set()
        overall = overall or Deadline(self.wait.wait_timeout)
        while len([a for a in outcome.attempts if a.action == "create"]) < self.max_attempts:
            number = len(outcome.attempts) + 1
            if overall.expired:
                raise ProvisionError(f"gave up after wait_timeout={self.wait.wait_timeout:g}s", outcome.attempts)
            offer = self._next_offer(offer_id if not tried_offers else None, excluded, tried_offers,
                                     outcome.attempts)
            attempt = Attempt(number, "create", offer_id=offer.id, machine_id=offer.machine_id,
                              dph_total=offer.dph_total)
            outcome.attempts.append(attempt)
            tried_offers.add(offer.id)
            started = time.monotonic()
            instance_id = self._create(spec, offer, attempt, outcome)
            if instance_id is None:
                _exclude(excluded, attempt.machine_id)
                attempt.seconds = round(time.monotonic() - started, 1)
                continue
            outcome.offer = offer
            if not self.wait.wait:
                attempt.outcome = "created"
                outcome.instance = self.api.get_instance(instance_id)
                return outcome
            instance = self._wait_usable(instance_id, attempt, overall)
            attempt.seconds = round(time.monotonic() - started, 1)
            if instance is not None:
                outcome.instance = instance
                return outcome
            self._discard(instance_id, attempt, outcome)
            if attempt.outcome == "ssh_auth":
                # Another machine would refuse the same key: stop instead of renting more.
                raise ProvisionError(
                    f"instance {instance_id} was running but refused the launch key {self.wait.ssh_key_file} "
                    f"(destroyed). Check that its public key is registered on the account (vast_ssh_key, "
                    f"team API keys cannot register keys) and that the key file is the right one", outcome.attempts)
            _exclude(excluded, attempt.machine_id)
        raise ProvisionError(
            f"no usable instance for {spec.label!r} after {self.max_attempts} attempt(s); every instance this "
            f"run created was destroyed and verified gone", outcome.attempts)

    def start(self, instance: Instance, outcome: Outcome) -> Instance | None:
        """Start a stopped instance and wait for it; None (and the instance destroyed) if it does not come back."""
        attempt = Attempt(len(outcome.attempts) + 1, "start", machine_id=instance.machine_id,
                          dph_total=instance.dph_total, instance_id=instance.id)
        outcome.attempts.append(attempt)
        started = time.monotonic()
        self.api.start_instance(instance.id)
        outcome.changed_ids.append(instance.id)
        if not self.wait.wait:
            attempt.outcome = "started"
            return self.api.get_instance(instance.id)
        back = self._wait_usable(instance.id, attempt, Deadline(self.wait.wait_timeout))
        attempt.seconds = round(time.monotonic() - started, 1)
        if back is None:
            self._discard(instance.id, attempt, outcome)
        return back

    def reuse(self, instance: Instance, outcome: Outcome) -> Instance:
        """An instance this run did not create: wait for it, but never destroy it on a timeout."""
        attempt = Attempt(len(outcome.attempts) + 1, "reuse", machine_id=instance.machine_id,
                          dph_total=instance.dph_total, instance_id=instance.id)
        outcome.attempts.append(attempt)
        if not self.wait.wait:
            attempt.outcome = instance.actual_status or "pending"
            return instance
        started = time.monotonic()
        ready = self._wait_usable(instance.id, attempt, Deadline(self.wait.wait_timeout))
        attempt.seconds = round(time.monotonic() - started, 1)
        if ready is None:
            raise ProvisionError(
                f"existing instance {instance.id} labelled {instance.label!r} is not usable ({attempt.outcome}: "
                f"{attempt.detail}); it was left as it is because this run did not create it. Destroy it with "
                f"state=absent (playbooks/teardown.yml -e run={instance.label}) and launch again", outcome.attempts)
        return ready

    def destroy_verified(self, instance_id: int) -> bool:
        """Destroy and poll until the API no longer shows it alive. True if this call destroyed it."""
        destroyed = self.api.destroy_instance(instance_id)
        deadline = Deadline(DESTROY_VERIFY_S)
        while True:
            current = self.api.get_instance(instance_id)
            if is_gone(current):
                return destroyed
            if deadline.expired:
                raise VastAPIError(None, "destroy_unverified",
                                   f"instance {instance_id} still {current.actual_status} "
                                   f"{DESTROY_VERIFY_S:.0f}s after destroy")
            self.sleep(min(1.0, self.wait.poll))

    # -- steps ------------------------------------------------------------------------------------------------

    def _next_offer(self, offer_id, excluded: set, tried: set, attempts: list):
        if offer_id is not None:
            return _PinnedOffer(int(offer_id))
        try:
            found = self.search(excluded)
        except ProvisionError as exc:  # keep what the earlier attempts did in the report
            raise ProvisionError(str(exc), attempts, api_error=exc.api_error) from None
        offers = [o for o in found if o.id not in tried and o.machine_id not in excluded]
        if not offers:
            raise ProvisionError(
                "no (more) offers match the search" + (f" after excluding machines {sorted(excluded)}"
                                                       if excluded else ""), attempts)
        return offers[0]

    def _create(self, spec: CreateSpec, offer, attempt: Attempt, outcome: Outcome) -> int | None:
        """The new instance's id, or None when the offer was gone or the create certainly did not happen."""
        known = {i.id for i in self._labelled(spec.label)}
        try:
            created = self.api.create_instance(
                offer.id, image=spec.image, disk_gb=spec.disk, label=spec.label, env=spec.env,
                onstart=spec.onstart, bid_price=spec.bid_price, runtype=spec.runtype)
        except VastAPIError as exc:
            if exc.is_offer_gone:
                attempt.outcome, attempt.detail = "offer_gone", exc.msg
                self.log(f"offer {offer.id} is gone; trying the next one")
                return None
            if exc.status is None or exc.status >= 500:
                # The create may have happened: look the label up before trying again.
                found = self._find_new(spec.label, known)
                if found is not None:
                    attempt.instance_id, attempt.detail = found.id, f"create answered {exc}; found it by label"
                    outcome.changed_ids.append(found.id)
                    return found.id
                attempt.outcome, attempt.detail = "error", f"{exc} (no instance with the label appeared)"
                return None
            attempt.outcome, attempt.detail = "error", str(exc)
            raise ProvisionError(f"create on offer {offer.id} failed: {exc}", outcome.attempts,
                                 api_error=exc.as_dict()) from None
        attempt.instance_id = created.id
        outcome.changed_ids.append(created.id)
        return created.id

    def _wait_usable(self, instance_id: int, attempt: Attempt, overall: Deadline) -> Instance | None:
        """Running within loading_timeout and SSH-reachable; None (with attempt.outcome set) otherwise."""
        budget = Deadline(max(1.0, min(self.wait.loading_timeout, overall.remaining)))
        try:
            instance = wait_until_running(self.api, instance_id, budget, poll=self.wait.poll)
            attempt.machine_id = attempt.machine_id or instance.machine_id
            attempt.dph_total = attempt.dph_total or instance.dph_total
            host, port = instance.ssh_address()
            if self.wait.ssh_key_file is not None:
                wait_for_ssh(SshTarget(host, port, key_file=self.wait.ssh_key_file), budget,
                             poll=min(1.0, self.wait.poll))
        except VastAPIError as exc:
            # The API failed while we watched: this attempt's instance is of unknown health, so it goes.
            attempt.outcome, attempt.detail = "error", f"API failed while waiting: {exc}"
            return None
        except InstanceWaitError as exc:
            if exc.reason == "timeout":
                attempt.outcome = "stuck_loading"
            elif exc.reason == "ssh":
                attempt.outcome = "ssh_auth" if "AuthenticationException" in str(exc) else "ssh"
            else:
                attempt.outcome = exc.reason  # failed | gone
            attempt.detail = str(exc)
            if attempt.machine_id is None and exc.instance is not None:
                attempt.machine_id = exc.instance.machine_id
            self.log(f"instance {instance_id}: {exc}")
            return None
        attempt.outcome = "running"
        return instance

    def _discard(self, instance_id: int, attempt: Attempt, outcome: Outcome) -> None:
        try:
            if self.destroy_verified(instance_id):
                outcome.terminated_ids.append(instance_id)
            attempt.destroyed = True
        except VastAPIError as exc:
            attempt.detail += f"; DESTROY FAILED: {exc}"
            raise CleanupFailed(
                f"instance {instance_id} ({attempt.outcome}) could not be destroyed and verified gone: {exc}. "
                f"NOT retrying: a retry could create a duplicate paid instance. Destroy instance {instance_id} "
                f"yourself (vastai destroy instance {instance_id} -y) and check the account",
                outcome.attempts, api_error=exc.as_dict()) from None

    def _labelled(self, label: str) -> list:
        return self.api.list_instances(label=label)

    def _find_new(self, label: str, known: set) -> Instance | None:
        deadline = Deadline(LOOKUP_AFTER_AMBIGUOUS_S)
        while True:
            fresh = [i for i in self._labelled(label) if i.id not in known and not is_gone(i)]
            if fresh:
                return fresh[0]
            if deadline.expired:
                return None
            self.sleep(1.0)


@dataclass(frozen=True)
class _PinnedOffer:
    """An offer given by id (no search): we know nothing else about it until the create."""

    id: int
    machine_id: int | None = None
    dph_total: float | None = None


def _exclude(excluded: set, machine_id: int | None) -> None:
    if machine_id is not None:
        excluded.add(machine_id)


def is_gone(instance) -> bool:
    """Destroyed as far as billing is concerned: absent, or shown with a destroyed/terminated status."""
    if instance is None:
        return True
    states = {instance.actual_status, instance.intended_status, instance.cur_state}
    return bool(states & {"destroyed", "deleted", "terminated"})
