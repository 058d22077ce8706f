"""setup_env.yml against an emulator enforcing Vast's documented env-var value pattern, with masked reads."""

from __future__ import annotations

import pytest

VALUES = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "WANDB_PROJECT": "universal-simulator",
    "WANDB_ENTITY": "team_a",
    "B2_KEY_ID": "005a1b2c3d4e5f60000000001",
    "B2_APP_KEY": "K005AbCdEfGhIjKlMnOpQrStUvWxYz0",
    "B2_S3_ENDPOINT": "https://s3.us-west-004.backblazeb2.com",
    "B2_S3_REGION": "us-west-004",
    "B2_BUCKET": "universal-simulator-runs",
}


@pytest.fixture
def strict(emulator):
    emulator.settings(strict_env_values=True)
    yield emulator
    emulator.settings(strict_env_values=False)


def test_setup_env_stores_values_inside_the_pattern_and_is_idempotent_despite_masked_reads(ansible, strict):
    first = ansible.playbook("playbooks/setup_env.yml", env=VALUES)
    assert first.rc == 0, first.out[-3000:]
    stored = strict.secrets()
    assert stored["B2_S3_ENDPOINT"] == "s3.us-west-004.backblazeb2.com"  # the instance adds https:// back
    assert {k: stored[k] for k in VALUES if k != "B2_S3_ENDPOINT"} == {k: v for k, v in VALUES.items()
                                                                       if k != "B2_S3_ENDPOINT"}
    assert set(strict.api("GET", "/api/v0/secrets/").json()["secrets"].values()) == {"********"}
    again = ansible.playbook("playbooks/setup_env.yml", env=VALUES)
    assert again.rc == 0 and all(c["changed"] == 0 for c in again.recap().values()), again.out
    assert "unchanged: WANDB_API_KEY, WANDB_PROJECT, WANDB_ENTITY, B2_KEY_ID, B2_APP_KEY, B2_S3_ENDPOINT" in again.out
    forced = ansible.playbook("playbooks/setup_env.yml", "-e", "force=true", env=VALUES)
    assert forced.rc == 0 and "unchanged: -" in forced.out, forced.out


def test_a_value_the_pattern_refuses_is_named_and_never_shown(ansible, strict):
    refused = ansible.playbook("playbooks/setup_env.yml", env={**VALUES, "B2_APP_KEY": "K005/sl4sh+plus=Sentinel"})
    assert refused.rc != 0
    assert "the value of B2_APP_KEY does not match Vast's documented env-var value pattern" in refused.out
    assert "invalid_characters" in refused.out and "sl4sh" not in refused.out
