"""Bad launch input fails with a clear message before anything is created (the emulator saw no create)."""

from __future__ import annotations

import pytest
from ctl_support import api_requests_since, creates_since, last_seq, writes_since

TRAINING_ENV = ("B2_KEY_ID", "B2_APP_KEY", "B2_S3_ENDPOINT", "B2_S3_REGION", "B2_BUCKET")

CASES = {
    # name: (extra vars, what the message must say, whether the API may be called at all)
    "unknown_config": (["-e", "config=nope"], ["Unknown config nope", "Available configs:", "tiny"], False),
    "small_disk": (["-e", "config=tiny", "-e", "disk=4"], ["disk >= 8", "got 4"], False),
    "bad_stage": (["-e", "config=tiny", "-e", "stage=pretrain"], ["stage one of all, autoencoder", "got pretrain"],
                  False),
    "bid_missing": (["-e", "config=tiny", "-e", "interruptible=true"], ["required with interruptible=true"], False),
    "unknown_gpu": (["-e", "config=tiny", "-e", "gpu=H100X"], ["unknown GPU name 'H100X'", "H100_PCIE"], True),
    "price_too_low": (["-e", "config=tiny", "-e", "gpu=RTX_4090", "-e", "max_price=0.01"],
                      ["max_price=0.01 is below every matching offer", "the cheapest costs $"], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_before_any_create(ansible, emulator, case):
    extra, expected, may_call_api = CASES[case]
    seq = last_seq(emulator)
    result = ansible.playbook("launch.yml", "-e", "provision=false", "-e", "run_name=ctl-bad", *extra)
    assert result.rc != 0, result.out
    for text in expected:
        assert text in result.out, f"{text!r} missing from:\n{result.out[-3000:]}"
    assert creates_since(emulator, seq) == []
    assert writes_since(emulator, seq) == []
    if not may_call_api:
        assert api_requests_since(emulator, seq) == [], "input this bad must fail before any API call"


def test_missing_api_key_fails_clearly(ansible, emulator):
    seq = last_seq(emulator)
    result = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "provision=false", "-e", "run_name=ctl-bad",
                              unset=("VAST_API_KEY",))
    assert result.rc != 0
    assert "No Vast.ai API key: set VAST_API_KEY" in result.out
    assert api_requests_since(emulator, seq) == []


def test_missing_account_env_vars_fail_before_any_create(ansible, emulator):
    for name in TRAINING_ENV:
        emulator.api("DELETE", "/api/v0/secrets/", json={"key": name})
    seq = last_seq(emulator)
    result = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "run_name=ctl-bad")  # provision on
    assert result.rc != 0, result.out
    assert "The Vast account lacks the env-vars B2_KEY_ID, B2_APP_KEY" in result.out
    assert "playbooks/setup_env.yml" in result.out
    assert creates_since(emulator, seq) == [] and writes_since(emulator, seq) == []
