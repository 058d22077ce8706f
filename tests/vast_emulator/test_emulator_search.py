"""Offer search as the server does it: filters on numbers sent as strings, names, country codes, order, limit."""

from __future__ import annotations

DEFAULTS = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}}


def search(emulator, **body):
    response = emulator.api("POST", "/api/v0/bundles/", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["offers"]


def test_the_cli_example_query(emulator):
    body = {**DEFAULTS, "reliability": {"gt": "0.98"}, "num_gpus": {"eq": "1"}, "gpu_name": {"eq": "RTX 4090"},
            "order": [["dph_total", "asc"]], "type": "on-demand", "allocated_storage": 5.0}
    offers = search(emulator, **body)
    assert offers
    assert all(o["reliability"] > 0.98 and o["num_gpus"] == 1 and o["gpu_name"] == "RTX 4090" for o in offers)
    prices = [o["dph_total"] for o in offers]
    assert prices == sorted(prices)
    assert all(o["verified"] and not o["external"] for o in offers)


def test_at_least_six_single_rtx_4090_offers_for_fleet_tests(emulator):
    offers = search(emulator, **DEFAULTS, gpu_name={"eq": "RTX 4090"}, num_gpus={"eq": "1"})
    in_use = len(emulator.state()["offers_in_use"])
    assert len(offers) + in_use >= 6


def test_in_notin_country_codes_ram_in_mb_descending_order_and_limit(emulator):
    body = {"external": {"eq": False}, "rentable": {"eq": True}, "gpu_name": {"in": ["RTX 4090", "RTX 3090"]},
            "geolocation": {"notin": ["CN", "VN"]}, "cpu_ram": {"gte": 64000.0},
            "order": [["num_gpus", "desc"], ["dph_total", "asc"]], "limit": 4}
    offers = search(emulator, **body)
    assert 0 < len(offers) <= 4
    assert {o["gpu_name"] for o in offers} <= {"RTX 4090", "RTX 3090"}
    assert all(o["geolocation"].rsplit(", ", 1)[1] not in ("CN", "VN") for o in offers)
    assert all(o["cpu_ram"] >= 64000 for o in offers)
    gpus = [o["num_gpus"] for o in offers]
    assert gpus == sorted(gpus, reverse=True)


def test_country_code_eq_and_numeric_lte(emulator):
    offers = search(emulator, geolocation={"eq": "US"}, dph_total={"lte": "1.0"})
    assert offers and all(o["geolocation"].endswith(", US") and o["dph_total"] <= 1.0 for o in offers)


def test_default_filters_hide_unverified_offers(emulator):
    everything = search(emulator)
    verified = search(emulator, **DEFAULTS)
    assert any(not o["verified"] for o in everything)
    assert len(verified) < len(everything)


def test_bid_search_prices_at_min_bid(emulator):
    on_demand = {o["id"]: o for o in search(emulator, **DEFAULTS, gpu_name={"eq": "L40S"})}
    bid = search(emulator, **DEFAULTS, gpu_name={"eq": "L40S"}, type="bid")
    assert bid and all(o["is_bid"] and o["dph_total"] < on_demand[o["id"]]["dph_total"] for o in bid)


def test_new_search_endpoint_takes_q(emulator):
    response = emulator.api("PUT", "/api/v0/search/asks/", json={"select_cols": ["*"], "q": {"num_gpus": {"eq": "8"}}})
    offers = response.json()["offers"]
    assert offers and all(o["num_gpus"] == 8 for o in offers)


def test_a_rented_offer_leaves_search_and_returns_after_destroy(emulator):
    offer_id = search(emulator, **DEFAULTS, gpu_name={"eq": "RTX A6000"}, order=[["dph_total", "asc"]])[0]["id"]
    created = emulator.api("PUT", f"/api/v0/asks/{offer_id}/", json={"image": "vastai/pytorch", "disk": 10.0}).json()
    assert offer_id not in [o["id"] for o in search(emulator, gpu_name={"eq": "RTX A6000"})]
    second = emulator.api("PUT", f"/api/v0/asks/{offer_id}/", json={"image": "vastai/pytorch", "disk": 10.0})
    assert second.status_code == 404 and "no_such_ask" in second.json()["msg"]
    emulator.destroy(created["new_contract"])
    assert offer_id in [o["id"] for o in search(emulator, gpu_name={"eq": "RTX A6000"})]
