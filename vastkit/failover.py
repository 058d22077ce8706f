"""Getting one labelled instance running: create with failover, start, wait, destroy-and-verify.

The failover follows SkyPilot's Vast provider: on an offer that is gone, an instance stuck in `loading`, or
one that lands in a state that never recovers, destroy only what this attempt created, verify it is gone,
exclude that machine and try the next offer. If the cleanup cannot be verified, stop: a retry could create
a duplicate paid instance.

What else keeps a launch from leaving a paid instance behind:
- **Anything that goes wrong after a create** (an interrupt, a bare `EOFError` from paramiko, a `TypeError`
  from an odd row, a bug) destroys that attempt's instance before the error travels on; the `Outcome`
  keeps `created_ids`/`terminated_ids` so the caller can still report them.
- **A journal entry is written before every create** and removed once its instance is handed over or
  destroyed (`vastkit.journal`); `recover()` destroys what a controller killed mid-launch left.
- **An ambiguous create** (timeout, 5xx: it may have happened) is looked up by its create token for
  `WaitSpec.lookup_window` seconds before anything else is rented; after the launch, instances of the run
  that this launch created beyond the one it keeps are destroyed (a create that listed late).
- **Two launches of one run** end with one instance: the local lock keeps them apart on one machine; across
  machines the lowest instance id among the run's instances wins, and the other launch destroys its own.
- **An instance that disappears while we wait** was torn down by someone: the launch stops instead of
  renting a replacement.
- **A 429 or 5xx while waiting** says nothing about the instance: the wait goes on. Only a wait that ends
  with the API still failing gives up, destroys what it created and stops (another offer would not help).

States are read as `vastkit.waiting.phase` reads them: gone, stopped (before failed: a stopped instance is
started, not destroyed), failed, running, pending. SSH is tried on the direct address, then Vast's proxy
(`waiting.first_reachable`); the instance handed over names the address that worked.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import paramiko

from run_contract import OWNER_ENV, OWNER_VALUE
from vastkit.errors import VastAPIError
from vastkit.interrupts import NEVER, Cancel, Interrupted
from vastkit.journal import CREATE_TOKEN_ENV, PENDING_GRACE_S, Journal, launch_of
from vastkit.progress import WaitReporter, describe_state
from vastkit.records import Instance, Offer
from vastkit.retry import Deadline, is_transient
from vastkit.waiting import (
    FAILED,
    GONE,
    PENDING,
    RUNNING,
    SSH_NOT_READY,
    STOPPED,
    SshTarget,
    first_reachable,
    phase,
    ssh_handshake,
)

__all__ = ["FAILED", "GONE", "PENDING", "RUNNING", "STOPPED", "phase"]  # re-exported for the module adapter

DESTROY_VERIFY_S = 60.0
# After a create that failed ambiguously (5xx, timeout), how long its instance may take to be listed.
LOOKUP_WINDOW_S = 60.0
LOOKUP_POLL_S = 2.0
SSH_PROBE_TIMEOUT_S = 10.0


def is_gone(instance: Instance | None) -> bool:
    """Destroyed as far as billing is concerned: absent, or shown with a destroyed/terminated status."""
    return phase(instance) == GONE


def is_owned(instance: Instance) -> bool:
    """Created by this project (the marker every create of ours sets)."""
    return instance.tags.get(OWNER_ENV) == OWNER_VALUE


class ProvisionError(Exception):
    """No usable instance; `attempts` says what happened on each try."""

    def __init__(self, msg: str, attempts: list, *, api_error: dict | None = None):
        super().__init__(msg)
        self.attempts = attempts
        self.api_error = api_error


class CleanupFailed(ProvisionError):
    """An instance this run created could not be shown destroyed. Never retry after this."""


class TornDown(ProvisionError):
    """The instance disappeared while the launch waited for it: someone tore the run down."""


class LaunchConflict(ProvisionError):
    """Another launch of the same run rented an instance with a lower id; this launch destroyed its own."""


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
    lookup_window: float = LOOKUP_WINDOW_S  # after an ambiguous create


@dataclass
class Attempt:
    """One try, as reported in the module's `attempts`."""

    number: int
    action: str  # create | start | reuse
    offer_id: int | None = None
    machine_id: int | None = None
    dph_total: float | None = None
    instance_id: int | None = None
    # running | created | started | offer_gone | stuck_loading | stopped | failed | gone | ssh | ssh_auth |
    # api_unavailable | api_error | lost_tie | error | interrupted
    outcome: str = "pending"
    detail: str = ""
    destroyed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome:
    instance: Instance | None
    attempts: list = field(default_factory=list)
    changed_ids: list = field(default_factory=list)  # created, started or stopped by this call
    created_ids: list = field(default_factory=list)  # created by this call (the ones a failure may destroy)
    terminated_ids: list = field(default_factory=list)
    offer: Offer | None = None


class NoJournal:
    """For callers that keep no journal (tests of other things)."""

    def will_create(self, token: str, offer_id) -> None:
        pass

    def created(self, token: str, instance_id: int) -> None:
        pass

    def forget(self, token: str) -> None:
        pass


@dataclass(frozen=True)
class _PinnedOffer:
    """An offer given by id (no search): we know nothing else about it until the create."""

    id: int
    machine_id: int | None = None
    dph_total: float | None = None


def ssh_login(host: str, port: int, key_file: str, timeout: float) -> None:
    """Log in with the launch key and run nothing: proves the key is in place (a TCP probe would not)."""
    ssh_handshake(SshTarget(host, port, key_file=key_file), timeout=timeout)


class Provisioner:
    """One label's lifecycle against one client. Not thread-safe: one per label.

    `sleep` waits between polls and raises `Interrupted` when `cancel` trips; `nap` is the plain sleep of a
    cleanup, which nothing may cut short.
    """

    def __init__(self, api, wait: WaitSpec, *, search: Callable[[set], list], max_attempts: int,
                 journal: Journal | NoJournal | None = None, cancel: Cancel = NEVER,
                 log: Callable[[str], None] = lambda _msg: None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None, nap: Callable[[float], None] = time.sleep,
                 ssh_probe: Callable[[str, int, str, float], None] = ssh_login, launch_id: str | None = None,
                 attach_launch_key: bool = False):
        self.api = api
        self.attach_launch_key = attach_launch_key
        self.wait = wait
        self.search = search  # excluded machine ids -> offers, best first
        self.max_attempts = max_attempts
        self.journal = journal or NoJournal()
        self.cancel = cancel
        self.log = log
        self.clock = clock
        self.sleep = sleep or cancel.sleep
        self.nap = nap
        self.ssh_probe = ssh_probe
        self.launch_id = launch_id or secrets.token_hex(6)

    # -- public ---------------------------------------------------------------------------------------------

    def launch(self, spec: CreateSpec, *, offer_id: int | None = None, outcome: Outcome | None = None,
               excluded_machines: set | None = None) -> Outcome:
        """Create an instance labelled `spec.label` and (if waiting) see it running and SSH-reachable."""
        outcome = outcome or Outcome(instance=None)
        excluded = set(excluded_machines or ())
        tried_offers: set = set()
        overall = Deadline(self.wait.wait_timeout, self.clock)
        known_before = {i.id for i in self._labelled(spec.label) if not is_gone(i)}
        while len([a for a in outcome.attempts if a.action == "create"]) < self.max_attempts:
            self.cancel.check()
            if overall.expired:
                raise ProvisionError(f"gave up after wait_timeout={self.wait.wait_timeout:g}s", outcome.attempts)
            offer = self._next_offer(offer_id if not tried_offers else None, excluded, tried_offers,
                                     outcome.attempts)
            attempt = Attempt(len(outcome.attempts) + 1, "create", offer_id=offer.id, machine_id=offer.machine_id,
                              dph_total=offer.dph_total)
            outcome.attempts.append(attempt)
            tried_offers.add(offer.id)
            self.log(f"attempt {attempt.number}/{self.max_attempts}: renting {_describe_offer(offer)}")
            token = f"{self.launch_id}.{attempt.number}"
            started = self.clock()
            ids: list[int] = []  # this attempt's instance, once known (the cleanup reads it)
            self.journal.will_create(token, offer.id)  # before the request: a kill from here on is recoverable
            try:
                instance_id = self._create(spec, offer, attempt, outcome, token)
                if instance_id is None:
                    _exclude(excluded, attempt.machine_id)
                    attempt.seconds = round(self.clock() - started, 1)
                    continue
                ids.append(instance_id)
                outcome.offer = offer
                self._check_rivals(spec.label, instance_id, known_before, attempt, outcome, token)
                if not self.wait.wait:
                    attempt.outcome = "created"
                    outcome.instance = self.api.get_instance(instance_id)
                    self.journal.forget(token)  # handed over
                    return outcome
                instance = self._wait_usable(instance_id, attempt, overall)
                attempt.seconds = round(self.clock() - started, 1)
                if instance is not None:
                    self._check_rivals(spec.label, instance_id, known_before, attempt, outcome, token)
                    self._sweep(spec.label, instance_id, outcome)
                    outcome.instance = instance
                    self.journal.forget(token)  # handed over
                    return outcome
            except ProvisionError:
                raise  # raised by our own steps, which cleaned up first
            except BaseException as exc:
                self._clean_after(exc, spec.label, token, ids, attempt, outcome)
                if isinstance(exc, Exception):
                    raise ProvisionError(
                        f"{type(exc).__name__} after the create on offer {offer.id}: {exc}; "
                        f"{_cleanup_words(attempt)}", outcome.attempts) from exc
                raise
            self._discard(instance_id, attempt, outcome, token)
            self._stop_unless_another_offer_helps(spec.label, instance_id, attempt, outcome)
            _exclude(excluded, attempt.machine_id)
        raise ProvisionError(
            f"no usable instance for {spec.label!r} after {self.max_attempts} attempt(s); every instance this "
            f"run created was destroyed and verified gone", outcome.attempts)

    def start(self, instance: Instance, outcome: Outcome) -> Instance | None:
        """Start a stopped instance and wait for it; None (and the instance destroyed) if it does not come back."""
        attempt = Attempt(len(outcome.attempts) + 1, "start", machine_id=instance.machine_id,
                          dph_total=instance.dph_total, instance_id=instance.id)
        outcome.attempts.append(attempt)
        started = self.clock()
        self.log(f"starting stopped instance {instance.id}")
        self.api.start_instance(instance.id)
        outcome.changed_ids.append(instance.id)
        if not self.wait.wait:
            attempt.outcome = "started"
            return self.api.get_instance(instance.id)
        # A just-started instance may read stopped or exited until the host picks the start up: only the
        # deadline decides here.
        back = self._wait_usable(instance.id, attempt, Deadline(self.wait.wait_timeout, self.clock),
                                 fail_fast=False)
        attempt.seconds = round(self.clock() - started, 1)
        if back is None:
            if attempt.outcome == "gone":
                raise TornDown(_torn_down_message(instance.label, instance.id), outcome.attempts)
            self._discard(instance.id, attempt, outcome, None)
        return back

    def reuse(self, instance: Instance, outcome: Outcome) -> Instance:
        """An instance this run did not create: wait for it, but never destroy it on a timeout."""
        attempt = Attempt(len(outcome.attempts) + 1, "reuse", machine_id=instance.machine_id,
                          dph_total=instance.dph_total, instance_id=instance.id)
        outcome.attempts.append(attempt)
        if not self.wait.wait:
            attempt.outcome = instance.actual_status or "pending"
            return instance
        started = self.clock()
        ready = self._wait_usable(instance.id, attempt, Deadline(self.wait.wait_timeout, self.clock))
        attempt.seconds = round(self.clock() - started, 1)
        if ready is None:
            raise ProvisionError(
                f"existing instance {instance.id} labelled {instance.label!r} is not usable ({attempt.outcome}: "
                f"{attempt.detail}); it was left as it is because this run did not create it. Destroy it with "
                f"state=absent (playbooks/teardown.yml -e run={instance.label}) and launch again", outcome.attempts)
        return ready

    def destroy_verified(self, instance_id: int) -> bool:
        """Destroy and poll until the API no longer shows it alive. True if this call destroyed it."""
        destroyed = self.api.destroy_instance(instance_id)
        deadline = Deadline(DESTROY_VERIFY_S, self.clock)
        while True:
            current = self.api.get_instance(instance_id)
            if is_gone(current):
                return destroyed
            if deadline.expired:
                raise VastAPIError(None, "destroy_unverified",
                                   f"instance {instance_id} still {current.actual_status} "
                                   f"{DESTROY_VERIFY_S:.0f}s after destroy")
            self.nap(min(1.0, self.wait.poll))

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

    def _create(self, spec: CreateSpec, offer, attempt: Attempt, outcome: Outcome, token: str) -> int | None:
        """The new instance's id, or None when the offer was gone or the create certainly did not happen."""
        env = {**spec.env, OWNER_ENV: OWNER_VALUE, CREATE_TOKEN_ENV: token}
        try:
            created = self.api.create_instance(
                offer.id, image=spec.image, disk_gb=spec.disk, label=spec.label, env=env,
                onstart=spec.onstart, bid_price=spec.bid_price, runtype=spec.runtype)
        except VastAPIError as exc:
            if exc.is_offer_gone:
                self.journal.forget(token)
                attempt.outcome, attempt.detail = "offer_gone", exc.msg
                self.log(f"offer {offer.id} is gone; trying the next one")
                return None
            if exc.status is None or exc.status >= 500:
                # The create may have happened: look for its token before trying again.
                found = self._find_token(spec.label, token, self.wait.lookup_window)
                if found is not None:
                    attempt.detail = f"create answered {exc}; found its instance by its create token"
                    self._took(found.id, token, attempt, outcome)
                    return found.id
                # Kept in the journal: should it be listed later still, the sweep or a recovery destroys it.
                attempt.outcome = "error"
                attempt.detail = (f"{exc} (no instance with the label appeared within "
                                  f"{self.wait.lookup_window:g}s)")
                return None
            self.journal.forget(token)
            attempt.outcome, attempt.detail = "error", str(exc)
            raise ProvisionError(f"create on offer {offer.id} failed: {exc}", outcome.attempts,
                                 api_error=exc.as_dict()) from None
        self._took(created.id, token, attempt, outcome)
        self.log(f"created instance {created.id}" + (
            f"; waiting for it to run and answer SSH (up to {self.wait.loading_timeout:g}s)" if self.wait.wait else ""))
        if self.attach_launch_key:
            self._attach_launch_key(created.id)
        return created.id

    def _attach_launch_key(self, instance_id: int) -> None:
        """A team API key cannot register account keys (POST /ssh/ answers team_ssh_keys_not_supported), so a
        new instance has none of ours: attach the launch key to it. Only then: with a personal key, the account
        decides which keys get in (a key it does not hold must be refused)."""
        try:
            public = Path(f"{self.wait.ssh_key_file}.pub").expanduser().read_text().strip()
            self.api.attach_ssh_key(instance_id, public)
        except Exception as exc:  # the SSH wait decides whether we got in after all
            self.log(f"could not attach the launch key to instance {instance_id}: {exc}")

    def _took(self, instance_id: int, token: str, attempt: Attempt, outcome: Outcome) -> None:
        attempt.instance_id = instance_id
        outcome.changed_ids.append(instance_id)
        outcome.created_ids.append(instance_id)
        self.journal.created(token, instance_id)

    def _wait_usable(self, instance_id: int, attempt: Attempt, overall: Deadline, *,
                     fail_fast: bool = True) -> Instance | None:
        """Running within loading_timeout and SSH-reachable; None (with attempt.outcome set) otherwise."""
        budget = Deadline(max(1.0, min(self.wait.loading_timeout, overall.remaining)), self.clock)
        last_api_error: VastAPIError | None = None
        last_ssh: BaseException | None = None
        current: Instance | None = None
        report = WaitReporter(self.log, instance_id, clock=self.clock)
        while True:
            self.cancel.check()
            try:
                current = self.api.get_instance(instance_id)
                last_api_error = None
            except VastAPIError as exc:
                if not is_transient(exc, idempotent=True):
                    attempt.outcome, attempt.detail = "api_error", f"the API failed while waiting: {exc}"
                    return None
                last_api_error = exc  # a 429 storm or a 5xx says nothing about the instance: keep waiting
            if last_api_error is None:
                state = phase(current)
                if current is not None:
                    attempt.machine_id = attempt.machine_id or current.machine_id
                    attempt.dph_total = attempt.dph_total or current.dph_total
                if state == GONE:
                    attempt.outcome, attempt.detail = "gone", f"instance {instance_id} disappeared while waiting"
                    self.log(attempt.detail)
                    return None
                if fail_fast and state in (FAILED, STOPPED):
                    attempt.outcome = "failed" if state == FAILED else "stopped"
                    attempt.detail = (f"instance {instance_id} is {current.actual_status}: "
                                      f"{current.status_msg or 'no status message'}")
                    self.log(attempt.detail)
                    return None
                if state == RUNNING and current.ssh_addresses():
                    if self.wait.ssh_key_file is None:
                        attempt.outcome = "running"
                        return current
                    key, timeout = self.wait.ssh_key_file, max(1.0, min(SSH_PROBE_TIMEOUT_S, budget.remaining))
                    try:
                        host, port = first_reachable(current, key, timeout,
                                                     probe=lambda h, p, k=key, t=timeout: self.ssh_probe(h, p, k, t))
                        attempt.outcome = "running"
                        self.log(f"instance {instance_id}: ready, SSH root@{host}:{port} "
                                 f"({self.clock() - report.started:.0f}s)")
                        return current.with_ssh(host, port)
                    except SSH_NOT_READY as exc:
                        last_ssh = exc  # not up yet (a bare EOFError: banner sent, then closed)
                report(describe_state(current, last_ssh))
            else:
                report(f"the API is not answering ({last_api_error.status or 'unreachable'}); still waiting")
            if budget.expired:
                return self._timed_out(instance_id, attempt, budget, current, last_api_error, last_ssh)
            self.sleep(self.wait.poll)

    def _timed_out(self, instance_id, attempt, budget, current, api_error, ssh_error) -> None:
        if api_error is not None:
            attempt.outcome = "api_unavailable"
            attempt.detail = f"the API kept failing for {budget.seconds:.0f}s while waiting: {api_error}"
        elif ssh_error is not None:
            auth = isinstance(ssh_error, paramiko.AuthenticationException)
            attempt.outcome = "ssh_auth" if auth else "ssh"
            attempt.detail = (f"instance {instance_id}: SSH not ready after {budget.seconds:.0f}s "
                              f"({type(ssh_error).__name__}: {ssh_error})")
        else:
            attempt.outcome = "stuck_loading"
            status = current.actual_status if current is not None else None
            msg = current.status_msg if current is not None else None
            attempt.detail = (f"instance {instance_id}: still {status or 'provisioning'} after "
                              f"{budget.seconds:.0f}s ({msg or 'no status message'})")
        self.log(attempt.detail)
        return None

    def _stop_unless_another_offer_helps(self, label: str, instance_id: int, attempt: Attempt,
                                         outcome: Outcome) -> None:
        """After a discarded attempt: raise where renting on another machine would not help."""
        if attempt.outcome == "gone":
            raise TornDown(_torn_down_message(label, instance_id), outcome.attempts)
        if attempt.outcome == "ssh_auth":
            # Another machine would refuse the same key: stop instead of renting more.
            raise ProvisionError(
                f"instance {instance_id} was running but refused the launch key {self.wait.ssh_key_file} "
                f"(destroyed). Check that its public key is registered on the account "
                f"(universal_simulator.vastai.vast_ssh_key, team API keys cannot register keys) and that the key file "
                f"is the right one", outcome.attempts)
        if attempt.outcome in ("api_unavailable", "api_error"):
            raise ProvisionError(
                f"{attempt.detail}; instance {instance_id} was destroyed (verified) and nothing else is rented "
                f"while the API fails: launch again later", outcome.attempts)

    def _discard(self, instance_id: int, attempt: Attempt, outcome: Outcome, token: str | None) -> None:
        try:
            if self.destroy_verified(instance_id):
                outcome.terminated_ids.append(instance_id)
            attempt.destroyed = True
            self.log(f"destroyed instance {instance_id} ({attempt.outcome}), verified gone")
        except VastAPIError as exc:
            attempt.detail += f"; DESTROY FAILED: {exc}"
            raise CleanupFailed(
                f"instance {instance_id} ({attempt.outcome}) could not be destroyed and verified gone: {exc}. "
                f"NOT retrying: a retry could create a duplicate paid instance. Destroy instance {instance_id} "
                f"yourself (vastai destroy instance {instance_id} -y) and check the account",
                outcome.attempts, api_error=exc.as_dict()) from None
        if token is not None:
            self.journal.forget(token)

    def _clean_after(self, exc: BaseException, label: str, token: str, ids: list, attempt: Attempt,
                     outcome: Outcome) -> None:
        """The catch-all: whatever interrupted this attempt, its instance goes (and is verified gone)."""
        attempt.outcome = "interrupted" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "error"
        attempt.detail = (attempt.detail + "; " if attempt.detail else "") + f"{type(exc).__name__}: {exc}"
        if not ids:
            # Cut off while the create was in flight: its instance may exist. Look for the token briefly;
            # if it is not listed yet the journal entry stays, for the next launch, status or teardown.
            with contextlib.suppress(Exception):
                found = self._find_token(label, token, min(self.wait.lookup_window, 15.0), cancellable=False)
                if found is not None:
                    self._took(found.id, token, attempt, outcome)
                    ids.append(found.id)
        for instance_id in ids:
            try:
                self._discard(instance_id, attempt, outcome, token)
            except CleanupFailed as cleanup:
                raise CleanupFailed(f"{cleanup} (while handling {type(exc).__name__}: {exc})", outcome.attempts,
                                    api_error=cleanup.api_error) from exc

    def _check_rivals(self, label: str, ours: int, known_before: set, attempt: Attempt, outcome: Outcome,
                      token: str) -> None:
        """Another launch of this run rented too: the lowest id wins; if that is not ours, ours goes."""
        rivals = [i for i in self._labelled(label)
                  if i.id != ours and i.id not in known_before and not is_gone(i)
                  and launch_of(i.tags.get(CREATE_TOKEN_ENV)) != self.launch_id]
        lower = sorted(i.id for i in rivals if i.id < ours)
        if not lower:
            return
        attempt.outcome = "lost_tie"
        attempt.detail = f"another launch of {label!r} rented instance {lower[0]} (lower id wins)"
        self._discard(ours, attempt, outcome, token)
        raise LaunchConflict(
            f"another launch of run {label!r} rented instance {lower[0]} at the same time; the lowest id wins, "
            f"so this launch destroyed its own instance {ours} (verified gone) and stops. The run continues on "
            f"instance {lower[0]}", outcome.attempts)

    def _sweep(self, label: str, keep: int, outcome: Outcome) -> None:
        """Destroy instances of this launch other than the one kept (an ambiguous create that listed late)."""
        for extra in self._labelled(label):
            token = extra.tags.get(CREATE_TOKEN_ENV)
            if extra.id == keep or is_gone(extra) or launch_of(token) != self.launch_id:
                continue
            self.log(f"instance {extra.id} of this launch appeared late; destroying it")
            if extra.id not in outcome.created_ids:
                outcome.created_ids.append(extra.id)
                outcome.changed_ids.append(extra.id)
            sweep = Attempt(len(outcome.attempts) + 1, "sweep", instance_id=extra.id, machine_id=extra.machine_id,
                            outcome="extra", detail="created by this launch beyond the instance kept")
            outcome.attempts.append(sweep)
            self._discard(extra.id, sweep, outcome, token)

    def _labelled(self, label: str) -> list:
        return self.api.list_instances(label=label)

    def _find_token(self, label: str, token: str, window: float, *, cancellable: bool = True) -> Instance | None:
        deadline = Deadline(window, self.clock)
        while True:
            for instance in self._labelled(label):
                if instance.tags.get(CREATE_TOKEN_ENV) == token and not is_gone(instance):
                    return instance
            if deadline.expired:
                return None
            (self.sleep if cancellable else self.nap)(min(LOOKUP_POLL_S, max(0.1, deadline.remaining)))


def _describe_offer(offer) -> str:
    if offer.dph_total is None:
        return f"offer {offer.id}"
    return (f"offer {offer.id} ({offer.num_gpus}x {offer.gpu_name}, ${offer.dph_total:.3f}/h, "
            f"machine {offer.machine_id})")


def _exclude(excluded: set, machine_id: int | None) -> None:
    if machine_id is not None:
        excluded.add(machine_id)


def _torn_down_message(label, instance_id) -> str:
    return (f"instance {instance_id} of run {label!r} disappeared while this launch waited for it (torn down, e.g. "
            f"by playbooks/teardown.yml -e run={label}); not renting a replacement. Launch again to start over")


def _cleanup_words(attempt: Attempt) -> str:
    if attempt.instance_id is None:
        return "no instance of this attempt was found"
    return f"instance {attempt.instance_id} of this attempt was destroyed (verified gone)"


# -- the journal's other half: what a dead controller left ------------------------------------------------------


@dataclass
class Recovered:
    label: str
    token: str
    instance_id: int | None
    outcome: str  # destroyed | would_destroy | already_gone | never_listed | pending | destroy_failed
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def recover(api, journal: Journal, destroy: Callable[[int], bool] | None, *, now: float | None = None) -> list:
    """Destroy the instances `journal` names (creates never handed over). The caller holds the run's lock.

    `destroy=None` is a dry run (check mode): it says what it would destroy and changes nothing.
    """
    entries = journal.entries()
    if not entries:
        return []
    now = time.time() if now is None else now
    live = [i for i in api.list_instances(label=journal.label) if not is_gone(i)]
    by_token = {i.tags.get(CREATE_TOKEN_ENV): i for i in live if i.tags.get(CREATE_TOKEN_ENV)}
    results = []
    for entry in entries:
        found = by_token.get(entry.token)
        if found is None and entry.instance_id is not None:
            shown = api.get_instance(entry.instance_id)  # relabelled since? the token still names it
            found = shown if shown is not None and not is_gone(shown) and \
                shown.tags.get(CREATE_TOKEN_ENV) == entry.token else None
        if found is None:
            if entry.instance_id is not None or now - entry.requested_at > PENDING_GRACE_S:
                what = "already_gone" if entry.instance_id is not None else "never_listed"
                results.append(Recovered(journal.label, entry.token, entry.instance_id, what))
                if destroy is not None:
                    journal.forget(entry.token)
            else:
                results.append(Recovered(journal.label, entry.token, None, "pending",
                                         "its create may still be listed; kept for the next look"))
            continue
        if destroy is None:
            results.append(Recovered(journal.label, entry.token, found.id, "would_destroy",
                                     f"{found.actual_status or 'created'}, never handed over"))
            continue
        try:
            destroy(found.id)
        except VastAPIError as exc:
            results.append(Recovered(journal.label, entry.token, found.id, "destroy_failed", str(exc)))
            continue
        journal.forget(entry.token)
        results.append(Recovered(journal.label, entry.token, found.id, "destroyed",
                                 f"was {found.actual_status or 'created'}, never handed over"))
    return results
