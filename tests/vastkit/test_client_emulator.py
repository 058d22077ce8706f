"""vastkit ↔ vast_emulator over real HTTP: every client operation, its error shapes, and each fault."""

from __future__ import annotations

import time

import pytest

from vastkit.client import VastAPI
from vastkit.errors import VastAPIError, VastConfigError
from vastkit.query import OfferFilter
from vastkit.retry import Deadline, RetryPolicy
from vastkit.settings import ApiSettings
from vastkit.waiting import InstanceWaitError, SshTarget, ssh_handshake, wait_until_ready, wait_until_running

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def api(emulator):
    emulator.reset_faults()
    # from_env: paced at $VASTKIT_PACING_SCALE, the emulator's scale (tests/conftest.py).
    return VastAPI.from_env(url=emulator.url, api_key=emulator.api_key, retry=FAST_RETRY)


@pytest.fixture
def cleanup(api):
    created: list[int] = []
    yield created
    for instance_id in created:
        api.destroy_instance(instance_id)


def _create(api, cleanup, gpu="RTX 3090", **kwargs):
    offer = api.search_offers(OfferFilter(gpu_name=gpu, num_gpus=1), limit=1)[0]
    created = api.create_instance(offer.id, disk_gb=16, **kwargs)
    cleanup.append(created.id)
    return offer, created


def test_search_filters_and_orders_server_side(api):
    offers = api.search_offers("reliability > 0.95 num_gpus=1 gpu_name=RTX_4090", order="dph")
    assert offers, "the catalogue has RTX 4090 offers"
    assert {o.gpu_name for o in offers} == {"RTX 4090"} and {o.num_gpus for o in offers} == {1}
    assert all(o.reliability > 0.95 for o in offers)
    prices = [o.dph_total for o in offers]
    assert prices == sorted(prices)
    expensive_first = api.search_offers(OfferFilter(gpu_name="RTX 4090"), order="dph-")
    assert [o.dph_total for o in expensive_first] == sorted((o.dph_total for o in expensive_first), reverse=True)
    cheap = api.search_offers(OfferFilter(max_dph=prices[0]))
    assert cheap and all(o.dph_total <= prices[0] for o in cheap)
    excluded = api.search_offers(OfferFilter(gpu_name="RTX 4090", exclude_machine_ids=(offers[0].machine_id,)))
    assert offers[0].machine_id not in {o.machine_id for o in excluded}
    assert api.search_offers(OfferFilter(gpu_name="RTX 4090"), limit=2).__len__() == 2


def test_instance_lifecycle_through_the_client(api, cleanup, ssh_keypair):
    offer, created = _create(api, cleanup, label="vk-lifecycle", env={"TRAIN_STAGE": "all"}, onstart="echo started")
    assert created.id > 0 and created.instance_api_key
    assert offer.id not in {o.id for o in api.search_offers(OfferFilter(gpu_name="RTX 3090"))}, "a rented offer leaves search"

    instance = wait_until_ready(api, created.id, timeout=60, key_file=str(ssh_keypair.private_key), poll=0.3)
    assert instance.is_running and instance.label == "vk-lifecycle" and instance.machine_id == offer.machine_id
    assert instance.ssh_address() is not None

    assert [i.id for i in api.list_instances(label="vk-lifecycle")] == [created.id]
    assert created.id in {i.id for i in api.list_instances(label_prefix="vk-")}
    assert created.id in {i.id for i in api.list_instances(statuses=["running"])}

    api.label_instance(created.id, "vk-renamed")
    assert api.get_instance(created.id).label == "vk-renamed"

    deadline = Deadline(15)
    while "started" not in api.request_logs(created.id) and not deadline.expired:
        deadline.sleep(0.3)
    assert "started" in api.request_logs(created.id, tail=50), "logs return the onstart output"

    api.stop_instance(created.id)
    stopped = api.get_instance(created.id)
    assert stopped.is_stopped and stopped.intended_status == "stopped"
    api.start_instance(created.id)
    assert wait_until_running(api, created.id, Deadline(30), poll=0.3).is_running

    assert api.destroy_instance(created.id) is True
    assert api.get_instance(created.id) is None
    assert api.destroy_instance(created.id) is False, "destroying what is already gone is not an error"
    cleanup.remove(created.id)


def test_env_vars_and_ssh_keys(api, ssh_keypair):
    assert api.put_env_var("VK_TEST_VAR", "one") == "created"
    # Vast masks values on read: equality cannot be seen, so the value is written again and said so.
    assert api.env_vars()["VK_TEST_VAR"] == "********"
    assert api.put_env_var("VK_TEST_VAR", "one") == "updated"
    assert api.put_env_var("VK_TEST_VAR", "two") == "updated"
    with pytest.raises(VastAPIError) as exc:
        api.create_env_var("VK_TEST_VAR", "three")
    assert exc.value.status == 400 and exc.value.error == "existing_key"
    assert api.delete_env_var("VK_TEST_VAR") is True
    assert api.delete_env_var("VK_TEST_VAR") is False
    assert "VK_TEST_VAR" not in api.env_vars()

    assert ssh_keypair.public_key.split()[1] in {k.public_key.split()[1] for k in api.ssh_keys()}
    user = api.current_user()
    assert "api_key" not in user and user.get("id")


def test_bad_input_gets_the_real_error_shape(api, emulator):
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090"), limit=1)[0]
    before = len(emulator.requests())
    with pytest.raises(VastAPIError) as small_disk:
        api.create_instance(offer.id, disk_gb=4)
    assert small_disk.value.status == 400 and small_disk.value.msg
    with pytest.raises(VastAPIError) as long_label:
        api.create_instance(offer.id, disk_gb=16, label="x" * 300)
    assert long_label.value.status == 400
    with pytest.raises(VastAPIError) as long_onstart:
        api.create_instance(offer.id, disk_gb=16, onstart="#" * 5000)
    assert long_onstart.value.status == 400
    with pytest.raises(VastAPIError) as gone:
        api.create_instance(999_999_999, disk_gb=16)
    assert gone.value.is_offer_gone, gone.value.as_dict()
    creates = [r for r in emulator.requests()[before:] if r["path"].startswith("/api/v0/asks/")]
    assert len(creates) == 4 and all(r["status"] >= 400 for r in creates), "no bad create rented anything"


def test_unknown_key_is_401_and_never_echoed(emulator):
    bad = VastAPI(ApiSettings(url=emulator.url, api_key="sentinel-not-a-key"), retry=FAST_RETRY)
    with pytest.raises(VastAPIError) as exc:
        bad.list_instances()
    assert exc.value.status == 401 and exc.value.error == "auth_error"
    assert "sentinel-not-a-key" not in str(exc.value) and "sentinel-not-a-key" not in repr(bad)


def test_missing_key_is_a_config_error_that_says_what_to_set(monkeypatch):
    monkeypatch.delenv("VAST_API_KEY", raising=False)
    with pytest.raises(VastConfigError, match="VAST_API_KEY"):
        VastAPI.from_env(url="http://127.0.0.1:9")


def test_rate_limit_with_and_without_retry_after_is_retried(api, emulator):
    emulator.set_faults({"kind": "http_error", "status": 429, "count": 2, "path": "/api/v0/secrets/"})
    assert isinstance(api.env_vars(), dict)
    emulator.set_faults({"kind": "http_error", "status": 429, "count": 1, "retry_after": 1,
                         "path": "/api/v0/secrets/"})
    started = time.monotonic()
    api.env_vars()
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 is honoured"
    emulator.set_faults({"kind": "http_error", "status": 429, "count": 10, "path": "/api/v0/secrets/"})
    with pytest.raises(VastAPIError) as exc:
        api.env_vars()
    assert exc.value.status == 429, "retries are bounded"
    emulator.reset_faults()


def test_server_errors_retry_reads_but_never_resend_a_create(api, emulator, cleanup):
    emulator.set_faults({"kind": "http_error", "status": 503, "count": 2, "path": "/api/v1/instances/"})
    assert isinstance(api.list_instances(), list)
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090"), limit=1)[0]
    before = len(emulator.requests())
    emulator.set_faults({"kind": "http_error", "status": 502, "count": 1, "method": "PUT", "path": "/api/v0/asks/"})
    with pytest.raises(VastAPIError) as exc:
        api.create_instance(offer.id, disk_gb=16)
    assert exc.value.status == 502
    creates = [r for r in emulator.requests(since=before) if r["path"].startswith("/api/v0/asks/")]
    assert len(creates) == 1, "a create that may have happened is not sent twice"


def test_offer_gone_between_search_and_create(api, emulator):
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090"), limit=1)[0]
    emulator.set_faults({"kind": "offer_gone", "target": "next_create", "status": 410})
    with pytest.raises(VastAPIError) as exc:
        api.create_instance(offer.id, disk_gb=16)
    assert exc.value.is_offer_gone and exc.value.status == 410


def test_stuck_loading_times_out_and_exited_fails_fast(api, emulator, cleanup):
    emulator.set_faults({"kind": "stuck_loading", "target": "next_create"})
    _, stuck = _create(api, cleanup)
    with pytest.raises(InstanceWaitError) as exc:
        wait_until_running(api, stuck.id, Deadline(2.5), poll=0.3)
    assert exc.value.reason == "timeout" and exc.value.instance.is_pending

    emulator.set_faults({"kind": "status", "target": "next_create", "status": "exited"})
    _, broken = _create(api, cleanup)
    started = time.monotonic()
    with pytest.raises(InstanceWaitError) as exc:
        wait_until_running(api, broken.id, Deadline(30), poll=0.3)
    assert exc.value.reason == "failed" and "exited" in str(exc.value)
    assert time.monotonic() - started < 20, "a state that never recovers is not waited out (deadline 30 s)"


def test_ssh_refused_at_first_then_ready(api, emulator, cleanup, ssh_keypair):
    emulator.set_faults({"kind": "ssh_refused", "target": "next_create", "seconds": 2})
    _, created = _create(api, cleanup)
    running = wait_until_running(api, created.id, Deadline(30), poll=0.2)
    host, port = running.ssh_address()
    with pytest.raises(OSError):
        ssh_handshake(SshTarget(host, port, key_file=str(ssh_keypair.private_key)), timeout=2)
    ready = wait_until_ready(api, created.id, timeout=30, key_file=str(ssh_keypair.private_key), poll=0.3)
    assert ready.id == created.id


def test_preemption_moves_the_instance_to_stopped(api, emulator, cleanup):
    emulator.set_faults({"kind": "preempt", "target": "next_create", "after_s": 1})
    _, created = _create(api, cleanup)
    wait_until_running(api, created.id, Deadline(30), poll=0.2)
    deadline = Deadline(15)
    while not api.get_instance(created.id).is_stopped and not deadline.expired:
        deadline.sleep(0.3)
    assert api.get_instance(created.id).actual_status == "stopped"


def test_instance_key_acts_on_its_own_instance_only(api, cleanup, emulator):
    _, mine = _create(api, cleanup)
    _, other = _create(api, cleanup)
    scoped = VastAPI(ApiSettings(url=emulator.url, api_key=mine.instance_api_key), retry=FAST_RETRY)
    with pytest.raises(VastAPIError) as exc:
        scoped.destroy_instance(other.id)
    assert exc.value.status in (401, 403)
    with pytest.raises(VastAPIError):
        scoped.env_vars()
    assert api.get_instance(other.id) is not None
    assert scoped.destroy_instance(mine.id) is True
    assert api.get_instance(mine.id) is None
    cleanup.remove(mine.id)
