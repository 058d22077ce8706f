"""Pacing to Vast's rate limits: the arithmetic, and the lock that makes a fleet's processes take turns."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time

from vastkit.pacing import LIMITS, EndpointState, Pacer, endpoint_of, threshold_seconds


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_requests_map_to_vasts_rate_limited_endpoints():
    assert endpoint_of("PUT", "/api/v0/asks/10000101/") == "create_instance"
    assert endpoint_of("GET", "/prefix/api/v0/instances/20000001/?owner=me") == "show_instance"
    assert endpoint_of("GET", "/api/v1/instances/?select_filters=%7B%7D") == "show_instances"
    assert endpoint_of("DELETE", "/api/v0/instances/5/") == "destroy_instance"
    assert endpoint_of("GET", "/api/v0/secrets/") == "show_env_vars"
    assert endpoint_of("POST", "/api/v0/secrets/") == "create_env_var"
    assert endpoint_of("POST", "/api/v0/bundles/") == endpoint_of("PUT", "/api/v0/search/asks/") == "search_offers"
    assert endpoint_of("PUT", "/api/v0/instances/5/") is None  # start/stop/label: no documented limit
    assert endpoint_of("GET", "/api/v0/users/current") is None


def test_the_next_request_waits_the_interval_after_the_last_one_ended():
    create = LIMITS["create_instance"]
    state = EndpointState().after(create, 1.0, ended=100.0, refused=False)
    assert state.wait(create, 1.0, now=101.0) == 3.5
    assert state.wait(create, 0.1, now=100.0) == 4.5  # the scale applies when the state is written
    refused = state.after(create, 1.0, ended=105.0, refused=True)
    assert refused.wait(create, 1.0, now=105.0) == 12.0  # a refused create: its penalty
    search = LIMITS["search_offers"]
    window = EndpointState()
    for t in range(10):
        window = window.after(search, 1.0, ended=200.0 + t, refused=False)
    assert window.wait(search, 1.0, now=210.0) == 50.0  # the 11th waits until the first leaves the minute
    assert EndpointState.from_json("not json") == EndpointState()
    assert EndpointState.from_json(window.to_json()) == window


def test_a_pacer_spaces_requests_and_records_a_429():
    fake = FakeTime()
    pacer = Pacer("id", scale=1.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        with pacer.slot("show_instance"):
            fake.now += 0.5  # the request takes half a second
    assert fake.slept == [2.0, 2.0]
    with pacer.slot("create_instance") as turn:
        turn.refused = True  # someone else's create earned the penalty
    with pacer.slot("create_instance"):
        pass
    assert fake.slept[-1] == 12.0
    with pacer.slot("gpu_names"):  # not limited
        pass
    assert len(fake.slept) == 3
    off = Pacer("id", scale=0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        with off.slot("create_instance"):
            pass
    assert len(fake.slept) == 3


def test_hold_then_slot_in_one_thread_does_not_lock_twice(tmp_path):
    pacer = Pacer("id", scale=0.01, directory=tmp_path)
    done = threading.Event()

    def nested():
        with pacer.hold("show_instances"), pacer.slot("show_instances"):
            done.set()

    thread = threading.Thread(target=nested)
    thread.start()
    thread.join(5)
    assert done.is_set()
    stored = json.loads((tmp_path / "id" / "show_instances").read_text())
    assert stored["next_at"] > 0


def _fleet_member(directory: str, scale: float, queue) -> None:
    pacer = Pacer("fleet", scale=scale, directory=directory)
    for _ in range(3):
        with pacer.slot("create_instance"):
            started = time.time()
            time.sleep(0.02)  # the request
            queue.put((started, time.time()))


def test_processes_of_one_controller_take_turns_through_the_pacing_files(tmp_path):
    scale = 0.05  # create: 0.225 s between one create's answer and the next create
    queue = multiprocessing.get_context("fork").Queue()
    members = [multiprocessing.get_context("fork").Process(target=_fleet_member, args=(str(tmp_path), scale, queue))
               for _ in range(4)]
    for member in members:
        member.start()
    for member in members:
        member.join(30)
    spans = sorted(queue.get(timeout=5) for _ in range(12))
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
    assert min(gaps) >= 4.5 * scale - 0.01, gaps
    assert oct((tmp_path / "fleet").stat().st_mode & 0o777) == "0o700"


def test_the_threshold_of_a_plain_text_429():
    assert threshold_seconds("API requests too frequent endpoint threshold=4.5") == 4.5
    assert threshold_seconds("API requests too frequent: endpoint threshold=2") == 2.0
    assert threshold_seconds("API requests too frequent") is None
