"""Records read API rows as the real API shapes them (vast-api.md §3)."""

from vastkit.errors import VastAPIError
from vastkit.records import Instance, Offer

ROW = {
    "id": 7835610, "machine_id": 4242, "actual_status": "running", "intended_status": "running",
    "status_msg": "success, running vastai/pytorch_2.5.1/ssh\n", "label": "run1", "image_uuid": "vastai/pytorch",
    "extra_env": [["WANDB_API_KEY", "sentinel"]], "num_gpus": 1, "gpu_name": "RTX 4090", "dph_total": 0.3612,
    "disk_space": 64.0, "ssh_host": "ssh4.vast.ai", "ssh_port": 31234, "public_ipaddr": "203.0.113.10",
    "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40022"}]}, "start_date": 1761008618.22,
    "is_bid": False,
}


def test_instance_prefers_direct_ssh_and_falls_back_to_the_proxy():
    inst = Instance.from_api(ROW)
    assert inst.ssh_address() == ("203.0.113.10", 40022)
    assert inst.ssh_address(prefer_direct=False) == ("ssh4.vast.ai", 31234)
    proxy_only = Instance.from_api({**ROW, "ports": None})
    assert proxy_only.ssh_address() == ("ssh4.vast.ai", 31234)
    assert Instance.from_api({**ROW, "ports": {}, "ssh_host": None}).ssh_address() is None


def test_instance_status_groups_and_no_env_leak():
    inst = Instance.from_api(ROW)
    assert inst.is_running and not inst.is_pending and not inst.is_failed
    assert inst.status_msg == "success, running vastai/pytorch_2.5.1/ssh"
    assert Instance.from_api({**ROW, "actual_status": "offline"}).is_failed
    assert Instance.from_api({**ROW, "actual_status": None}).is_pending
    assert "sentinel" not in repr(inst) and "sentinel" not in str(inst.to_dict()) and "extra_env" not in inst.raw


def test_offer_reads_numbers_that_arrive_as_strings():
    offer = Offer.from_api({"id": "12", "machine_id": 3, "gpu_name": "RTX 4090", "num_gpus": "2",
                            "dph_total": "0.5", "reliability2": 0.99})
    assert (offer.id, offer.num_gpus, offer.dph_total, offer.reliability) == (12, 2, 0.5, 0.99)


def test_error_message_is_safe_and_classifies():
    err = VastAPIError(404, "invalid_args", "error 404/3603: no_such_ask Instance type by id 9 is not available.",
                       method="PUT", path="/api/v0/asks/9/")
    assert err.is_offer_gone and not err.retryable
    assert "PUT /api/v0/asks/9/" in str(err) and "HTTP 404" in str(err)
