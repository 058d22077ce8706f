"""Account env-var values on Vast's terms: the documented pattern, and the local record behind idempotence."""

from __future__ import annotations

import pytest

from vastkit.envvars import ValueRecord, stored_value, value_problem


@pytest.mark.parametrize("name, value, stored", [
    ("B2_S3_ENDPOINT", "https://s3.us-west-004.backblazeb2.com", "s3.us-west-004.backblazeb2.com"),
    ("B2_S3_ENDPOINT", "https://s3.us-west-004.backblazeb2.com/", "s3.us-west-004.backblazeb2.com"),
    ("B2_S3_ENDPOINT", "s3.eu-central-003.backblazeb2.com", "s3.eu-central-003.backblazeb2.com"),
    ("B2_S3_ENDPOINT", "http://127.0.0.1:9000", "http://127.0.0.1:9000"),  # no bare-host form: sent as is
    ("B2_BUCKET", "https://not-an-endpoint", "https://not-an-endpoint"),  # only the endpoint is rewritten
])
def test_the_endpoint_is_stored_as_a_bare_host_where_it_can_be(name, value, stored):
    assert stored_value(name, value) == stored


def test_values_outside_the_pattern_are_named_without_their_value():
    assert value_problem("B2_S3_ENDPOINT", "s3.us-west-004.backblazeb2.com") is None
    assert value_problem("WANDB_API_KEY", "0123abcdef_-.") is None
    problem = value_problem("B2_APP_KEY", "K005/secret+part")
    assert "B2_APP_KEY" in problem and "secret" not in problem and "may refuse" in problem
    assert "bare host" in value_problem("B2_S3_ENDPOINT", "http://127.0.0.1:9000")


def test_the_record_knows_a_value_only_with_the_same_key(tmp_path):
    record = ValueRecord(tmp_path, "identity", "api-key-1")
    assert not record.matches("B2_BUCKET", "bucket-a")
    record.remember("B2_BUCKET", "bucket-a")
    assert record.matches("B2_BUCKET", "bucket-a") and not record.matches("B2_BUCKET", "bucket-b")
    assert "bucket-a" not in (tmp_path / "identity.json").read_text()
    assert oct((tmp_path / "identity.json").stat().st_mode & 0o777) == "0o600"
    assert not ValueRecord(tmp_path, "identity", "another-key").matches("B2_BUCKET", "bucket-a")
    record.remember("B2_BUCKET", None)
    assert not record.matches("B2_BUCKET", "bucket-a")
