"""No secret value appears anywhere in `ansible-playbook -vvv` output of setup_env, launch, status, teardown."""

from __future__ import annotations

from ctl_support import instances

SECRETS = {
    "WANDB_API_KEY": "S3NTINEL-wandb-key-4e1f0a",
    "WANDB_PROJECT": "S3NTINEL-wandb-project-91c2",
    "WANDB_ENTITY": "S3NTINEL-wandb-entity-77ad",
    "B2_KEY_ID": "S3NTINEL-b2-key-id-0c3b",
    "B2_APP_KEY": "S3NTINEL-b2-app-key-5d88",
    "B2_S3_ENDPOINT": "http://127.0.0.1:1/S3NTINEL-endpoint-a6e0",
    "B2_S3_REGION": "S3NTINEL-region-3f19",
    "B2_BUCKET": "S3NTINEL-bucket-e2d4",
}


def test_verbose_output_never_shows_a_secret(ansible, emulator):
    sentinels = [*SECRETS.values(), emulator.api_key]
    outputs = {}
    pushed = ansible.playbook("playbooks/setup_env.yml", "-vvv", env=SECRETS)
    assert pushed.rc == 0, pushed.out[-3000:]
    assert emulator.state()["account"]["env_var_names"] >= sorted(SECRETS)
    outputs["setup_env"] = pushed.out

    launched = ansible.playbook("launch.yml", "-vvv", "-e", "config=tiny", "-e", "provision=false",
                                "-e", "run_name=ctl-secret", env=SECRETS)
    assert launched.rc == 0, launched.out[-3000:]
    assert len(instances(emulator, "ctl-secret")) == 1
    outputs["launch"] = launched.out

    status = ansible.playbook("playbooks/status.yml", "-vvv", "-e", "run=ctl-secret", env=SECRETS)
    assert status.rc == 0, status.out[-3000:]
    assert "ctl-secret: instance" in status.out
    outputs["status"] = status.out

    down = ansible.playbook("playbooks/teardown.yml", "-vvv", "-e", "run=ctl-secret", env=SECRETS)
    assert down.rc == 0, down.out[-3000:]
    assert instances(emulator, "ctl-secret") == []
    outputs["teardown"] = down.out

    for name, text in outputs.items():
        leaked = [s for s in sentinels if s in text]
        assert not leaked, f"{name} -vvv output shows secret value(s) of {len(leaked)} variable(s)"
        assert "S3NTINEL" not in text, f"{name} -vvv output shows part of a secret"
    # The values did reach the account (so the test had something to leak).
    assert emulator.secrets()["B2_APP_KEY"] == SECRETS["B2_APP_KEY"]


def test_setup_env_reports_missing_values_and_is_idempotent(ansible, emulator, tmp_path):
    missing = ansible.playbook("playbooks/setup_env.yml", env={"WANDB_API_KEY": "k-only-one"})
    assert missing.rc != 0
    assert "missing value(s) for B2_KEY_ID, B2_APP_KEY, B2_S3_ENDPOINT, B2_BUCKET" in missing.out
    assert "nothing was written" in missing.out
    b2_only = {k: v for k, v in SECRETS.items() if k.startswith("B2_") and k != "B2_S3_REGION"}
    without_wandb = ansible.playbook("playbooks/setup_env.yml", env=b2_only)  # W&B is optional
    assert without_wandb.rc == 0, without_wandb.out
    assert "not set (optional): B2_S3_REGION, WANDB_API_KEY, WANDB_PROJECT, WANDB_ENTITY; without WANDB_API_KEY" \
        in " ".join(without_wandb.out.split()), without_wandb.out  # the YAML callback wraps long lines

    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f'export {k}="{v}-file"\n' for k, v in SECRETS.items()) + "# comment\n")
    first = ansible.playbook("playbooks/setup_env.yml", "-e", f"env_file={dotenv}")
    assert first.rc == 0, first.out
    assert "unchanged: -" in first.out  # every value differs from what the account held
    again = ansible.playbook("playbooks/setup_env.yml", "-e", f"env_file={dotenv}")
    assert again.rc == 0 and all(c["changed"] == 0 for c in again.recap().values()), again.out
    assert "unchanged: WANDB_API_KEY, WANDB_PROJECT" in again.out
    stored = emulator.secrets()  # the API itself shows every value masked
    assert stored["B2_BUCKET"] == SECRETS["B2_BUCKET"] + "-file"
    assert SECRETS["B2_APP_KEY"] not in first.out + again.out
