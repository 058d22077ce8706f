"""What an instance's state means for a launch, and the SSH address a login worked on (no server needed)."""

from __future__ import annotations

import paramiko
import pytest

from vastkit.records import Instance
from vastkit.waiting import FAILED, GONE, PENDING, RUNNING, STOPPED, first_reachable, phase

ROW = {"id": 7, "actual_status": "running", "intended_status": "running", "cur_state": "running",
       "next_state": "running", "status_msg": "", "ssh_host": "ssh4.vast.ai", "ssh_port": 31234,
       "public_ipaddr": "203.0.113.10", "ports": {"22/tcp": [{"HostPort": "40022"}]}, "start_date": 1.0}


def row(**change) -> Instance:
    return Instance.from_api({**ROW, **change})


@pytest.mark.parametrize("change, expected", [
    ({}, RUNNING),
    ({"actual_status": "loading"}, PENDING),
    ({"actual_status": None, "start_date": None}, PENDING),  # a fresh row with nulls
    ({"actual_status": "exited"}, FAILED),
    ({"actual_status": "offline", "cur_state": "stopped"}, FAILED),
    ({"actual_status": "created", "status_msg": "Error: OCI runtime create failed: ... cuda>=13.0 ..."}, FAILED),
    # Outbid: stopped before failed, even where the container reads exited.
    ({"actual_status": "exited", "intended_status": "stopped", "cur_state": "stopped", "next_state": "stopped"}, STOPPED),
    ({"actual_status": "stopped", "intended_status": "stopped", "cur_state": "stopped", "next_state": "stopped"}, STOPPED),
    ({"actual_status": "destroyed"}, GONE),
])
def test_phase_reads_gone_stopped_failed_running_pending_in_that_order(change, expected):
    assert phase(row(**change)) == expected
    assert phase(None) == GONE


def test_outbid_is_the_three_stopped_states():
    assert row(cur_state="stopped", intended_status="stopped", next_state="stopped").is_outbid
    assert not row(cur_state="stopped", intended_status="running", next_state="running").is_outbid


def test_ssh_tries_direct_then_the_proxy_and_names_the_one_that_worked():
    instance = row()
    assert instance.ssh_addresses() == [("203.0.113.10", 40022), ("ssh4.vast.ai", 31234)]
    tried = []

    def probe(host, port):
        tried.append((host, port))
        if host == "203.0.113.10":
            raise ConnectionRefusedError("direct is blocked on this host")

    assert first_reachable(instance, None, probe=probe) == ("ssh4.vast.ai", 31234)
    assert tried == [("203.0.113.10", 40022), ("ssh4.vast.ai", 31234)]
    reached = instance.with_ssh("ssh4.vast.ai", 31234)
    assert reached.to_dict()["ssh"] == {"host": "ssh4.vast.ai", "port": 31234, "user": "root"}
    assert reached == instance  # the same instance, only its address is chosen

    def eof_then_refused(host, port):
        raise EOFError() if host == "203.0.113.10" else ConnectionRefusedError("nothing here")

    with pytest.raises(ConnectionRefusedError):
        first_reachable(instance, None, probe=eof_then_refused)

    def auth(host, port):
        tried.append((host, port))
        raise paramiko.AuthenticationException("key refused")

    tried.clear()
    with pytest.raises(paramiko.AuthenticationException):
        first_reachable(instance, None, probe=auth)
    assert tried == [("203.0.113.10", 40022)]  # same sshd behind both: no second try


def test_a_proxy_only_instance_has_one_address():
    assert row(ports={}).ssh_addresses() == [("ssh4.vast.ai", 31234)]
    assert row(ports={}, ssh_host=None).ssh_addresses() == []
