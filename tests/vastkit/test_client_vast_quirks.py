"""vastkit against the emulator's strict side: rate limits (at Vast's own scale too), 429s during a wait, the
image/driver check, outbid, rows with nulls, a create error carrying new_contract, direct SSH blocked."""

from __future__ import annotations

import time

import pytest

from vastkit.client import DEFAULT_IMAGE, VastAPI
from vastkit.errors import VastAPIError
from vastkit.query import AUTO_TAG_IMAGE, OfferFilter
from vastkit.retry import Deadline, RetryPolicy
from vastkit.waiting import FAILED, STOPPED, InstanceWaitError, phase, wait_until_ready, wait_until_running

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def api(emulator):
    emulator.reset_faults()
    return VastAPI.from_env(url=emulator.url, api_key=emulator.api_key, retry=FAST_RETRY)


@pytest.fixture
def created(api):
    ids: list[int] = []
    yield ids
    for instance_id in ids:
        api.destroy_instance(instance_id)


def _rate_limited(emulator, since):
    return [e for e in emulator.requests(since) if e["status"] == 429]


def test_paced_creates_at_vasts_own_limits_earn_no_429(emulator, tmp_path, monkeypatch):
    """Scale 1 on both sides: three creates go out 4.5 s apart (after the previous answer), none refused."""
    monkeypatch.setenv("VASTKIT_PACING_DIR", str(tmp_path / "pacing"))
    monkeypatch.setenv("VASTKIT_PACING_SCALE", "1")
    scale = emulator.rate_limit_scale
    emulator.settings(rate_limit_scale=1.0)
    real = VastAPI.from_env(url=emulator.url, api_key=emulator.api_key)
    ids = []
    try:
        offers = real.search_offers(OfferFilter(gpu_name="RTX 4090", num_gpus=1), limit=3)
        since = emulator.requests()[-1]["seq"]
        started = time.monotonic()
        for offer in offers:
            ids.append(real.create_instance(offer.id, image="vastai/pytorch", disk_gb=10).id)
        elapsed = time.monotonic() - started
        creates = [e for e in emulator.requests(since) if e["path"].startswith("/api/v0/asks/")]
        assert [e["status"] for e in creates] == [200, 200, 200] and not _rate_limited(emulator, since)
        assert 9.0 <= elapsed < 14.0, elapsed  # two intervals of 4.5 s, no penalty
        for instance_id in ids:  # listings and shows are paced as well
            assert real.get_instance(instance_id) is not None
        assert not _rate_limited(emulator, since)
    finally:
        emulator.settings(rate_limit_scale=scale)
        for instance_id in ids:
            real.destroy_instance(instance_id)


def test_a_429_storm_while_waiting_is_not_a_sick_instance(api, emulator, created):
    emulator.set_faults({"kind": "http_error", "status": 429, "for_s": 2.0, "method": "GET",
                         "path": "/api/v1/instances/", "body": "API requests too frequent endpoint threshold=1.0"})
    emulator.set_faults({"kind": "http_error", "status": 429, "for_s": 2.0, "method": "GET",
                         "path": "/api/v0/instances/2"})
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1), limit=1)[0]
    created.append(api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10).id)
    instance = wait_until_running(api, created[0], Deadline(30), poll=0.3)
    assert instance.is_running


def test_the_default_image_with_its_cuda_filter_runs_and_a_too_new_cuda_fails_the_wait_at_once(api, emulator,
                                                                                             created):
    assert DEFAULT_IMAGE == AUTO_TAG_IMAGE == "vastai/pytorch:@vastai-automatic-tag"
    offers = api.search_offers(OfferFilter(gpu_name="RTX 4090", num_gpus=1, image=DEFAULT_IMAGE))
    assert offers and all(o.cuda_max_good >= 12.6 for o in offers)
    unfiltered = api.search_offers(OfferFilter(gpu_name="RTX 4090", num_gpus=1))
    assert any(o.cuda_max_good < 12.6 for o in unfiltered), "the catalogue has an old driver to leave out"
    created.append(api.create_instance(offers[0].id, disk_gb=10).id)
    assert wait_until_running(api, created[-1], Deadline(30), poll=0.3).image.startswith("vastai/pytorch:cuda-")

    old = next(o for o in unfiltered if o.cuda_max_good < 12.6)
    created.append(api.create_instance(old.id, image="vastai/pytorch:cuda-12.8.1-auto", disk_gb=10).id)
    started = time.monotonic()
    with pytest.raises(InstanceWaitError) as err:
        wait_until_running(api, created[-1], Deadline(60), poll=0.3)
    assert err.value.reason == FAILED and "OCI runtime create failed" in str(err.value)
    assert time.monotonic() - started < 10, "the OCI error is final: no wait for the loading timeout"


def test_an_outbid_instance_is_stopped_not_failed(api, emulator, created):
    emulator.set_faults({"kind": "preempt", "target": "next_create", "after_s": 0.5})
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1), limit=1)[0]
    created.append(api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10).id)
    deadline = Deadline(20)
    while phase(api.get_instance(created[0])) != STOPPED and not deadline.expired:
        deadline.sleep(0.2)
    instance = api.get_instance(created[0])
    assert phase(instance) == STOPPED and instance.is_outbid


def test_rows_with_a_null_start_date_are_read(api, emulator, created):
    emulator.set_faults({"kind": "null_fields", "target": "next_create", "fields": ["start_date"], "for_s": 30})
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1), limit=1)[0]
    created.append(api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10, label="vk-nulls").id)
    instance = wait_until_running(api, created[0], Deadline(30), poll=0.3)  # the vastai package raises TypeError
    assert instance.start_date is None
    assert [i.id for i in api.list_instances(label="vk-nulls")] == created


def test_a_bid_below_min_bid_is_an_error_and_its_stopped_instance_is_destroyed(api, emulator):
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1), offer_type="bid", limit=1)[0]
    with pytest.raises(VastAPIError) as err:
        api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10, bid_price=round(offer.min_bid / 2, 4),
                            label="vk-lowbid")
    assert err.value.error == "insufficient_bid" and "was destroyed" in err.value.msg
    assert api.list_instances(label="vk-lowbid") == []


def test_ssh_falls_back_to_the_proxy_where_direct_is_blocked(api, emulator, created, ssh_keypair):
    emulator.set_faults({"kind": "direct_blocked", "target": "next_create"})
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1, direct_ssh=True), limit=1)[0]
    created.append(api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10).id)
    ready = wait_until_ready(api, created[0], timeout=30, key_file=str(ssh_keypair.private_key), poll=0.3)
    assert ready.ssh_addresses()[0] == (ready.public_ipaddr, ready.direct_ssh_port)  # direct was tried first
    assert ready.ssh_address() == (ready.ssh_host, ready.ssh_port) == ("127.0.0.2", ready.ssh_port)
    assert ready.to_dict()["ssh"]["host"] == "127.0.0.2"


def test_banner_then_eof_is_not_ready_yet(api, emulator, created, ssh_keypair):
    emulator.set_faults({"kind": "ssh_eof", "target": "next_create", "seconds": 1.5})
    offer = api.search_offers(OfferFilter(gpu_name="RTX 3090", num_gpus=1), limit=1)[0]
    created.append(api.create_instance(offer.id, image="vastai/pytorch", disk_gb=10).id)
    ready = wait_until_ready(api, created[0], timeout=30, key_file=str(ssh_keypair.private_key), poll=0.3)
    assert ready.is_running and ready.ssh_address()
