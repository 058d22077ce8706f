"""The failover's decisions against a scripted fake API: every branch, no HTTP, no SSH, no waiting.

The end-to-end versions (real ansible-playbook, the emulator, real sshd) are in tests/ansible/.
"""

from __future__ import annotations

import json
import signal
import time

import paramiko
import pytest
from fake_vast import FakeVast, offer

from run_contract import OWNER_ENV, OWNER_VALUE
from vastkit.errors import VastAPIError
from vastkit.failover import (
    FAILED,
    RUNNING,
    STOPPED,
    CleanupFailed,
    CreateSpec,
    LaunchConflict,
    Provisioner,
    ProvisionError,
    TornDown,
    WaitSpec,
    phase,
    recover,
)
from vastkit.interrupts import Cancel, Interrupted, signals_trip
from vastkit.journal import CREATE_TOKEN_ENV, Journal, RunBusy, RunLock, journals, recoverable
from vastkit.records import Instance

LABEL = "unit-run"
OFFERS = [offer(101, 1), offer(102, 2), offer(103, 3), offer(104, 4)]


def spec(label: str = LABEL) -> CreateSpec:
    return CreateSpec(label=label, image="vastai/pytorch", disk=16, env={"TRAIN_RUN_NAME": label}, onstart=None,
                      bid_price=None, runtype="ssh_direc ssh_proxy")


def make(api: FakeVast, tmp_path, *, ssh=None, loading=30.0, total=600.0, attempts=3, key="/k", window=10.0,
         cancel: Cancel | None = None, launch_id: str = "L1") -> Provisioner:
    def search(excluded):
        return [o for o in OFFERS if o.machine_id not in excluded]

    wait = WaitSpec(wait=True, loading_timeout=loading, wait_timeout=total, poll=1.0, ssh_key_file=key,
                    lookup_window=window)
    return Provisioner(api, wait, search=search, max_attempts=attempts,
                       journal=Journal(LABEL, api.settings.url, tmp_path), cancel=cancel or Cancel(),
                       clock=api.clock.now, sleep=api.clock.sleep, nap=api.clock.sleep,
                       ssh_probe=ssh or (lambda *_: None), launch_id=launch_id)


def journal_of(api, tmp_path, label: str = LABEL) -> list:
    return Journal(label, api.settings.url, tmp_path).entries()


# -- states -----------------------------------------------------------------------------------------------------


def row(**fields) -> Instance:
    return Instance.from_api({"id": 1, **fields})


def test_stopped_is_read_before_failed():
    assert phase(row(actual_status="exited", intended_status="stopped")) == STOPPED  # started, not destroyed
    assert phase(row(actual_status="stopped", intended_status="stopped", cur_state="stopped")) == STOPPED  # outbid
    assert phase(row(actual_status="exited", intended_status="running")) == FAILED
    assert phase(row(actual_status="created", status_msg="Error: OCI runtime create failed: cuda>=12.8")) == FAILED
    assert phase(row(actual_status="running", intended_status="running")) == RUNNING
    assert phase(None) == "gone" and phase(row(actual_status="destroyed")) == "gone"


def test_odd_rows_do_not_crash_the_record():
    inst = Instance.from_api({"id": 3, "start_date": None, "extra_env": None, "ports": None})
    assert inst.tags == {} and inst.start_date is None and inst.ssh_address() is None
    tagged = Instance.from_api({"id": 4, "extra_env": [["VASTKIT_OWNER", "x"], ["WANDB_API_KEY", "s"], ["bad"]]})
    assert tagged.tags == {"VASTKIT_OWNER": "x"}


# -- the happy path and the marker -------------------------------------------------------------------------


def test_every_create_carries_the_owner_marker_and_a_token_and_the_journal_is_cleared(tmp_path):
    api = FakeVast()
    seen_journal = []
    original = api.create_instance

    def create(*args, **kwargs):
        seen_journal.append(journal_of(api, tmp_path))  # written BEFORE the request
        return original(*args, **kwargs)

    api.create_instance = create
    done = make(api, tmp_path).launch(spec())
    assert done.instance.is_running and done.created_ids == [done.instance.id]
    env = api.creates[0][2]
    assert env[OWNER_ENV] == OWNER_VALUE and env[CREATE_TOKEN_ENV] == "L1.1"
    assert [e.token for e in seen_journal[0]] == ["L1.1"] and seen_journal[0][0].instance_id is None
    assert journal_of(api, tmp_path) == []  # handed over: nothing left to recover


# -- failover branches -------------------------------------------------------------------------------------------


def test_offer_gone_then_stuck_then_running_each_on_another_machine(tmp_path):
    api = FakeVast(script=["offer_gone", "stuck", "ok"])
    done = make(api, tmp_path, loading=5).launch(spec())
    outcomes = [(a.outcome, a.destroyed) for a in done.attempts]
    assert outcomes == [("offer_gone", False), ("stuck_loading", True), ("running", False)]
    assert len({a.machine_id for a in done.attempts}) == 3
    assert api.alive(LABEL) == [done.instance.id] and done.terminated_ids == [api.destroys[0]]
    assert journal_of(api, tmp_path) == []


def test_a_failed_instance_is_replaced(tmp_path):
    api = FakeVast(script=["failed", "ok"])
    done = make(api, tmp_path).launch(spec())
    assert [a.outcome for a in done.attempts] == ["failed", "running"]
    assert api.alive(LABEL) == [done.instance.id]


def test_ambiguous_create_found_by_its_token_is_used_not_rented_twice(tmp_path):
    api = FakeVast(script=["ambiguous_made"])
    done = make(api, tmp_path).launch(spec())
    assert len(api.creates) == 1 and done.instance.id == done.created_ids[0]
    assert "found its instance by its create token" in done.attempts[0].detail


def test_ambiguous_create_that_lists_late_is_destroyed_after_the_launch(tmp_path):
    api = FakeVast(script=["ambiguous_late", "ok"], late_lists=5)
    done = make(api, tmp_path, window=3).launch(spec())  # the window ends before it is listed
    assert [a.outcome for a in done.attempts][:2] == ["error", "running"]
    assert "no instance with the label appeared within 3s" in done.attempts[0].detail
    assert done.attempts[-1].action == "sweep" and done.attempts[-1].destroyed
    assert api.alive(LABEL) == [done.instance.id]  # the late one is gone, the kept one stays


def test_ambiguous_create_that_made_nothing_tries_the_next_offer(tmp_path):
    api = FakeVast(script=["ambiguous_none", "ok"])
    done = make(api, tmp_path, window=4).launch(spec())
    assert [a.outcome for a in done.attempts] == ["error", "running"] and len(api.creates) == 2
    assert journal_of(api, tmp_path)[0].token == "L1.1"  # kept: it may still be listed; a recovery looks again


def test_failed_cleanup_stops_the_failover(tmp_path):
    api = FakeVast(script=["stuck", "ok"], destroy_fails=True)
    with pytest.raises(CleanupFailed, match="duplicate paid instance") as err:
        make(api, tmp_path, loading=3).launch(spec())
    assert len(api.creates) == 1 and not err.value.attempts[0].destroyed
    assert journal_of(api, tmp_path)[0].instance_id is not None  # still named: the next run tries again


def test_refused_ssh_key_stops_after_destroying(tmp_path):
    def refuse(*_):
        raise paramiko.AuthenticationException("Authentication failed.")

    api = FakeVast(script=["ok", "ok"])
    with pytest.raises(ProvisionError, match="refused the launch key") as err:
        make(api, tmp_path, ssh=refuse, loading=4).launch(spec())
    assert [(a.outcome, a.destroyed) for a in err.value.attempts] == [("ssh_auth", True)]
    assert len(api.creates) == 1 and api.alive() == []


def test_banner_then_eof_is_ssh_not_ready_yet(tmp_path):
    calls = []

    def eof_twice(*_):
        calls.append(1)
        if len(calls) <= 2:
            raise EOFError()  # what paramiko raises when a server sends its banner and closes

    api = FakeVast()
    done = make(api, tmp_path, ssh=eof_twice).launch(spec())
    assert done.instance.is_running and len(calls) == 3 and len(api.creates) == 1


def test_429_storm_while_waiting_is_not_a_sick_instance(tmp_path):
    api = FakeVast()
    api.get_errors = [VastAPIError(429, None, "API requests too frequent") for _ in range(12)]
    done = make(api, tmp_path, loading=60).launch(spec())
    assert [a.outcome for a in done.attempts] == ["running"] and len(api.creates) == 1 and api.destroys == []


def test_an_api_that_keeps_failing_ends_the_launch_without_renting_more(tmp_path):
    api = FakeVast()
    api.get_errors = [VastAPIError(503, None, "Service Unavailable") for _ in range(1000)]
    api.destroy_instance = lambda i: api.rows.pop(i, None) is not None  # the destroy still works
    real_get = api.get_instance

    def get(i):
        if api.get_errors and i in api.rows:
            raise api.get_errors.pop(0)
        return real_get(i)

    api.get_instance = get
    api.destroy_instance = lambda i: (api.get_errors.clear(), api.rows.pop(i, None))[1] is not None
    with pytest.raises(ProvisionError, match="nothing else is rented while the API fails") as err:
        make(api, tmp_path, loading=5).launch(spec())
    assert [(a.outcome, a.destroyed) for a in err.value.attempts] == [("api_unavailable", True)]
    assert len(api.creates) == 1 and api.alive() == []


def test_an_instance_torn_down_while_waiting_is_not_replaced(tmp_path):
    api = FakeVast(script=["vanish", "ok"])
    with pytest.raises(TornDown, match="not renting a replacement"):
        make(api, tmp_path).launch(spec())
    assert len(api.creates) == 1


@pytest.mark.parametrize("where,boom", [("api", EOFError()), ("ssh", TypeError("'NoneType' is not subscriptable")),
                                        ("api", KeyError("start_date"))])
def test_any_exception_after_the_create_destroys_that_instance(tmp_path, where, boom):
    api = FakeVast()
    pending = [boom]

    def blow(*_):
        if pending:
            raise pending.pop()

    if where == "api":
        api.on_get = blow
    with pytest.raises(ProvisionError, match="was destroyed \\(verified gone\\)") as err:
        make(api, tmp_path, ssh=blow if where == "ssh" else None).launch(spec())
    assert type(err.value.__cause__) is type(boom)
    assert api.alive() == [] and err.value.attempts[0].destroyed and err.value.attempts[0].outcome == "error"
    assert journal_of(api, tmp_path) == []


def test_an_interrupt_while_waiting_destroys_and_verifies(tmp_path):
    cancel = Cancel()
    api = FakeVast(script=["stuck"])
    api.on_get = lambda _i: cancel.trip("SIGINT received") if api._polls.get(_i, 0) >= 2 else None
    prov = make(api, tmp_path, cancel=cancel)
    with pytest.raises(Interrupted, match="SIGINT"):
        prov.launch(spec())
    assert api.alive() == [] and api.destroys == [500] and journal_of(api, tmp_path) == []


def test_a_real_sigint_in_the_main_thread_cleans_up_once(tmp_path):
    cancel = Cancel()
    api = FakeVast(script=["stuck"])

    def on_get(_i):
        if api._polls.get(_i, 0) == 2:
            signal.raise_signal(signal.SIGINT)

    api.on_get = on_get
    prov = make(api, tmp_path, cancel=cancel)
    before = signal.getsignal(signal.SIGINT)  # pytest's own, or SIG_IGN in an xdist worker
    with pytest.raises(Interrupted), signals_trip(cancel):
        prov.launch(spec())
    # The signal came again during the cleanup's reads: noted, and the cleanup was not cut short.
    assert cancel.signals_seen == ["SIGINT", "SIGINT"] and api.alive() == []
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_interrupted_while_the_create_is_in_flight_finds_and_destroys_it(tmp_path):
    cancel = Cancel()
    api = FakeVast()
    original = api.create_instance

    def create(*args, **kwargs):
        original(*args, **kwargs)  # the server made it ...
        raise Interrupted("SIGTERM received")  # ... but we were stopped before the answer

    api.create_instance = create
    with pytest.raises(Interrupted):
        make(api, tmp_path, cancel=cancel).launch(spec())
    assert api.alive() == [] and journal_of(api, tmp_path) == []


# -- two launches of one run ------------------------------------------------------------------------------------


def test_concurrent_launch_with_a_lower_id_wins(tmp_path):
    api = FakeVast()
    original = api.create_instance

    def create(*args, **kwargs):
        api.add_row(LABEL, instance_id=400, status="loading", env={CREATE_TOKEN_ENV: "OTHER.1"})  # the rival's
        return original(*args, **kwargs)

    api.create_instance = create
    with pytest.raises(LaunchConflict, match="destroyed its own instance 500") as err:
        make(api, tmp_path).launch(spec())
    assert api.alive(LABEL) == [400] and err.value.attempts[0].outcome == "lost_tie"


def test_concurrent_launch_with_a_higher_id_loses(tmp_path):
    api = FakeVast()
    api.next_id = 300
    original = api.create_instance

    def create(*args, **kwargs):
        created = original(*args, **kwargs)
        api.add_row(LABEL, instance_id=900, status="loading", env={CREATE_TOKEN_ENV: "OTHER.1"})
        return created

    api.create_instance = create
    done = make(api, tmp_path).launch(spec())
    assert done.instance.id == 300  # the rival (900) destroys its own when it compares


def test_the_local_lock_refuses_a_second_launch_of_the_run(tmp_path):
    with RunLock(LABEL, "http://x", tmp_path):
        with pytest.raises(RunBusy, match="another launch of run 'unit-run' is in progress") as err, \
                RunLock(LABEL, "http://x", tmp_path):
            pass
        assert "pid" in err.value.holder
    with RunLock(LABEL, "http://x", tmp_path):  # released
        pass


# -- the journal after a killed controller ------------------------------------------------------------------------


def test_recovery_destroys_only_what_the_journal_names(tmp_path):
    api = FakeVast()
    journal = Journal(LABEL, api.settings.url, tmp_path)
    orphan = api.add_row(LABEL, status="loading", env={CREATE_TOKEN_ENV: "DEAD.1", OWNER_ENV: OWNER_VALUE})
    other = api.add_row(LABEL, status="running", env={CREATE_TOKEN_ENV: "LIVE.1", OWNER_ENV: OWNER_VALUE})
    journal.will_create("DEAD.1", 101)
    journal.created("DEAD.1", orphan)
    journal.will_create("DEAD.2", 102)  # cut off before the answer; nothing listed (yet)
    dry = recover(api, journal, None)
    assert [(r.instance_id, r.outcome) for r in dry] == [(orphan, "would_destroy"), (None, "pending")]
    assert api.alive() == [orphan, other]
    done = recover(api, journal, lambda i: api.destroy_instance(i))
    assert [(r.instance_id, r.outcome) for r in done] == [(orphan, "destroyed"), (None, "pending")]
    assert api.alive() == [other] and [e.token for e in journal.entries()] == ["DEAD.2"]
    # Long after, a pending create that never showed up is dropped.
    assert recover(api, journal, api.destroy_instance, now=time.time() + 10_000)[0].outcome == "never_listed"
    assert journal.entries() == [] and not journal.path.exists()


def test_a_journal_of_a_live_launch_is_not_recoverable(tmp_path):
    journal = Journal(LABEL, "http://x", tmp_path)
    journal.will_create("A.1", 1)
    assert [j.label for j in journals("http://x", tmp_path)] == [LABEL] and journals("http://y", tmp_path) == []
    with RunLock(LABEL, "http://x", tmp_path), recoverable(journal) as ok:
        assert not ok
    with recoverable(journal) as ok:
        assert ok


def test_the_journal_file_is_plain_json_with_no_secret(tmp_path):
    journal = Journal("a/b c", "http://x", tmp_path)  # odd characters stay out of the path
    journal.will_create("T.1", 5)
    data = json.loads(journal.path.read_text())
    assert data["label"] == "a/b c" and data["creates"][0]["token"] == "T.1"
    assert journal.path.parent == tmp_path / "journal" and "/" not in journal.path.name.split("@")[0]
    assert oct(journal.path.stat().st_mode & 0o777) == "0o600"


# -- start and reuse -------------------------------------------------------------------------------------------------


def test_a_started_instance_that_does_not_come_back_is_destroyed(tmp_path):
    api = FakeVast()
    stopped = api.add_row(LABEL, status="exited", intended="stopped")
    prov = make(api, tmp_path, loading=5)
    from vastkit.failover import Outcome

    outcome = Outcome(instance=None)
    api.start_instance = lambda i: api.rows[i].update(intended_status="running", _mode="stuck",
                                                      actual_status="exited")
    assert prov.start(Instance.from_api(api.rows[stopped]), outcome) is None
    assert outcome.attempts[0].destroyed and api.alive() == [] and outcome.created_ids == []


def test_reuse_never_destroys_an_instance_it_did_not_create(tmp_path):
    api = FakeVast()
    theirs = api.add_row(LABEL, status="loading")
    api.rows[theirs]["_mode"] = "stuck"
    api._polls[theirs] = 0
    from vastkit.failover import Outcome

    with pytest.raises(ProvisionError, match="left as it is"):
        make(api, tmp_path, loading=3, total=3).reuse(Instance.from_api(api.rows[theirs]), Outcome(instance=None))
    assert api.alive() == [theirs] and api.destroys == []
