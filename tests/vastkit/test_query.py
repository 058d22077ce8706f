"""Structured offer filters become the same body the vastai CLI sends."""

import pytest

from vastkit.query import OfferFilter, QueryError, order, parse


def test_query_text_parses_like_the_cli():
    # vast-api.md §1a, captured body of `search offers 'reliability > 0.98 num_gpus=1 gpu_name=RTX_4090'`
    assert parse("reliability > 0.98 num_gpus=1 gpu_name=RTX_4090") == {
        "reliability": {"gt": "0.98"}, "num_gpus": {"eq": "1"}, "gpu_name": {"eq": "RTX 4090"},
    }
    assert order("dph") == [["dph_total", "asc"]]
    assert order("dph,num_gpus-") == [["dph_total", "asc"], ["num_gpus", "desc"]]


def test_structured_options_compose_into_one_filter():
    q = OfferFilter(gpu_name="H100 PCIE", num_gpus=2, min_reliability=0.98, max_dph=2.5, min_disk=64,
                    geolocation=["us", "SE"], direct_ssh=True, exclude_machine_ids=(11, 12)).to_query()
    assert q["gpu_name"] == {"eq": "H100 PCIE"}
    assert q["num_gpus"] == {"eq": "2"}
    assert q["reliability"] == {"gte": "0.98"}
    assert q["dph_total"] == {"lte": "2.5"}
    assert q["disk_space"] == {"gte": "64.0"}
    assert q["geolocation"] == {"in": ["US", "SE"]}
    assert q["direct_port_count"] == {"gte": "1"}
    assert q["machine_id"] == {"notin": [11, 12]}


def test_unknown_field_and_malformed_query_are_errors_that_say_what_is_allowed():
    with pytest.raises(QueryError, match="unknown search field.*gpuname.*valid fields include"):
        parse("gpuname=RTX_4090")
    with pytest.raises(QueryError, match="bad search query"):
        parse("reliability>")
