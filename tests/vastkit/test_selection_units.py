"""Which instances status/logs/teardown select and which ones the reaper takes, decided without any API."""

from __future__ import annotations

import json

import pytest

from run_contract import OWNER_ENV, OWNER_VALUE
from vastkit import client as vclient
from vastkit.client import VastAPI
from vastkit.failover import is_owned
from vastkit.records import Instance
from vastkit.selection import Probe, empty_selector_error, of_run, parse_age, reaper_verdict

NOW = 1_800_000_000.0
STALE = 900.0


def inst(label="r", *, status="running", age=3600.0, owned=True, intended="running") -> Instance:
    env = [[OWNER_ENV, OWNER_VALUE]] if owned else []
    return Instance.from_api({"id": 7, "label": label, "actual_status": status, "intended_status": intended,
                              "start_date": NOW - age if age is not None else None, "extra_env": env,
                              "ssh_host": "h", "ssh_port": 22})


def beat(seconds_ago: float) -> str:
    from datetime import datetime, timezone

    return json.dumps({"updated_at": datetime.fromtimestamp(NOW - seconds_ago, timezone.utc).isoformat()})


def verdict(instance, probe):
    return reaper_verdict(instance, probe, now=NOW, stale_after=STALE)


def test_empty_selectors_are_errors_and_absent_ones_are_not():
    assert "unset shell variable" in empty_selector_error("run", "")
    assert "every instance of the account" in empty_selector_error("label_prefix", "  ")
    assert empty_selector_error("run", None) is None and empty_selector_error("run", "x") is None


def test_a_run_selects_itself_and_its_fleet_never_an_unlabelled_instance():
    assert of_run(inst("burgers-1"), "burgers") and of_run(inst("burgers"), "burgers")
    assert not of_run(inst("burgers-a"), "burgers") and not of_run(inst("burgers32"), "burgers")
    assert not of_run(inst(None), "") and not of_run(inst(""), "burgers")


def test_ownership_is_the_create_marker_not_the_label():
    assert is_owned(inst("anything")) and not is_owned(inst("tiny-2026", owned=False))


@pytest.mark.parametrize("instance,probe,reap,words", [
    (inst(age=7 * 3600), Probe(True, beat(30)), False, "healthy"),  # a healthy 7-hour run: age never reaps
    (inst(), Probe(True, beat(2 * 3600)), True, "heartbeat stale"),
    (inst(), Probe(True, None), True, "no supervisor heartbeat"),
    (inst(age=60), Probe(True, None), False, "no supervisor heartbeat yet"),  # still being provisioned
    (inst(), Probe(True, "{not json"), True, "no supervisor heartbeat"),
    (inst(), Probe(False, error="Connection timed out"), True, "SSH unreachable"),
    (inst(age=60), Probe(False, error="Connection refused"), False, "younger than"),
    (inst(), Probe(False, error="root@h: Permission denied (publickey)."), False, "refused our key"),
    (inst(), None, False, "not read over SSH"),
    (inst(status="loading", age=60), None, False, "starting"),
    (inst(status="loading"), None, True, "not running"),
    (inst(status="exited", intended="stopped"), None, True, "not running"),
    (inst(age=None), Probe(True, None), False, "age unknown"),
])
def test_reaper_verdicts(instance, probe, reap, words):
    found = verdict(instance, probe)
    assert found.reap is reap and words in found.reason, found


def test_the_heartbeat_age_is_measured_on_the_instances_clock():
    written = json.dumps({"updated_epoch": NOW - 100, "updated_at": "2000-01-01T00:00:00+00:00"})
    assert verdict(inst(), Probe(True, written, clock=NOW - 50)).reason == "healthy: heartbeat 50 s ago"
    assert Probe.from_dict({"reached": True, "clock": "1700000000"}).clock == 1.7e9
    assert Probe.from_dict({"reached": True, "clock": ""}).clock is None


def test_ages_parse_with_units():
    assert parse_age("6h") == 21600 and parse_age("90m") == 5400 and parse_age("15s") == 15
    with pytest.raises(ValueError, match="stale_after='15 minutes'"):
        parse_age("15 minutes", "stale_after")


def test_destroy_of_a_gone_instance_answered_200_success_false_is_already_gone(monkeypatch):
    api = VastAPI.from_env(api_key="k", url="http://127.0.0.1:9")
    monkeypatch.setattr(vclient.instances, "destroy_instance",
                        lambda _client, _id: {"success": False, "error": "no_such_instance", "msg": "gone"})
    assert api.destroy_instance(5) is False
    monkeypatch.setattr(vclient.instances, "destroy_instance",
                        lambda _client, _id: {"success": False, "error": "other", "msg": "no"})
    with pytest.raises(vclient.VastAPIError, match="other"):
        api.destroy_instance(5)


def test_a_create_gets_the_official_clients_120_s_timeout(monkeypatch):
    seen = {}

    def put(self, path, query_args=None, json_data=None, timeout=None):
        seen.update(path=path, timeout=timeout)

        class Answer:
            def raise_for_status(self):
                pass

            def json(self):
                return {"success": True, "new_contract": 42}

        return Answer()

    monkeypatch.setattr(vclient.VastClient, "put", put)
    api = VastAPI.from_env(api_key="k", url="http://127.0.0.1:9")
    assert api.create_instance(9, label="x").id == 42
    assert seen == {"path": "/asks/9/", "timeout": 120.0}
