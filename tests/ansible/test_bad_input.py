"""Bad launch input fails with a clear message before anything is created (the emulator saw no create).

The planner's decisions have fast unit tests (tests/vastkit/test_planning.py); these prove that a user typing
them into `ansible-playbook launch.yml` (most with --check, which runs the same checks) sees the message.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ctl_support import REPO, api_requests_since, creates_since, last_seq, writes_since

from vastkit.client import VastAPI

TRAINING_ENV = ("B2_KEY_ID", "B2_APP_KEY", "B2_S3_ENDPOINT", "B2_S3_REGION", "B2_BUCKET")

CASES = {
    # name: (extra vars, what the message must say, whether the API may be called at all)
    "unknown_config": (["-e", "config=nope"], ["Unknown config nope", "Available configs:", "tiny"], False),
    "misspelled_options": (["-e", "config=tiny", "-e", "gpus=H100_PCIE", "-e", "max_prcie=0.5"],
                           ["unknown option gpus: did you mean gpu or num_gpus?",
                            "unknown option max_prcie: did you mean max_price?"], False),
    "strict_booleans": (["-e", "config=tiny", "-e", "auto_shutdown=ture", "-e", "provision=flase"],
                        ["auto_shutdown=ture: not a boolean; allowed: true or false",
                         "provision=flase: not a boolean; allowed: true or false"], False),
    "values_out_of_range": (["-e", "config=tiny", "-e", "disk=4", "-e", "stage=pretrain"],
                            ["disk=4: too small; allowed: a number from 8 to 8192 GB",
                             "stage=pretrain: not one of the choices; allowed: all, autoencoder"], False),
    "bid_missing": (["-e", "config=tiny", "-e", "interruptible=true"], ["interruptible=true needs bid=USD/h"], False),
    "names_and_count": (["-e", "config=tiny", "-e", "count=9", "-e", "run_name=" + "r" * 127],
                        ["too long for 9 runs", "count=9: that rents 9 paid instances at once; say -e "
                         "confirm_count=true"], False),
    "unknown_gpu": (["-e", "config=tiny", "-e", "gpu=H100X"], ["unknown GPU name 'H100X'", "H100_PCIE"], True),
    "price_too_low": (["-e", "config=tiny", "-e", "gpu=RTX_4090", "-e", "max_price=0.01"],
                      ["max_price=0.01 is below every matching offer", "the cheapest costs $"], True),
}


def run_checked(ansible, emulator, *extra, may_call_api: bool, env=None, unset=()):
    seq = last_seq(emulator)
    result = ansible.playbook("launch.yml", "--check", "-e", "provision=false", "-e", "run_name=ctl-bad", *extra,
                              env=env, unset=unset)
    assert result.rc != 0, result.out
    assert creates_since(emulator, seq) == [] and writes_since(emulator, seq) == []
    if not may_call_api:
        assert api_requests_since(emulator, seq) == [], "input this bad must fail before any API call"
    return result


def assert_says(result, *texts):
    for text in texts:
        assert text in result.out, f"{text!r} missing from:\n{result.out[-3000:]}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_before_any_create(ansible, emulator, case):
    extra, expected, may_call_api = CASES[case]
    assert_says(run_checked(ansible, emulator, *extra, may_call_api=may_call_api), *expected)


def test_an_offer_id_is_checked_against_gpu_and_bid(ansible, emulator):
    api = VastAPI.from_env(api_key=emulator.api_key, url=emulator.url)
    rtx = api.search_offers("gpu_name=RTX_4090", offer_type="bid", limit=1)[0]
    result = run_checked(ansible, emulator, "-e", "config=tiny", "-e", f"offer_id={rtx.id}", "-e", "gpu=H100_PCIE",
                         "-e", "interruptible=true", "-e", "bid=0.001", may_call_api=True)
    assert_says(result, f"offer_id={rtx.id} is a RTX_4090 offer, not gpu=H100_PCIE",
                f"bid=0.001 is below offer {rtx.id}'s min_bid of ${rtx.min_bid:.4f}/h")


def test_an_offer_id_whose_driver_cannot_start_the_image_is_refused(ansible, emulator):
    api = VastAPI.from_env(api_key=emulator.api_key, url=emulator.url)
    old = api.search_offers("cuda_max_good<12.6", limit=1)[0]  # below the automatic tag's oldest build
    result = run_checked(ansible, emulator, "-e", "config=tiny", "-e", f"offer_id={old.id}", may_call_api=True)
    assert_says(result, f"offer_id={old.id}'s host driver runs CUDA up to {old.cuda_max_good:g}, but image "
                        "vastai/pytorch:@vastai-automatic-tag needs CUDA 12.6", "cuda_max_good>=12.6")


def test_a_bad_sweep_override_names_the_dotted_key(ansible, emulator, tmp_path):
    sweep = tmp_path / "bad-override.yaml"
    sweep.write_text("config: tiny\nruns:\n  - overrides: {operator.lrr: 0.1}\n  - overrides: {operator.lr: fast}\n")
    result = run_checked(ansible, emulator, "-e", f"sweep={sweep}", may_call_api=False)
    assert_says(result, "sweep run ctl-bad-1: config configs/tiny.yaml with overrides: override operator.lrr: "
                        "operator has no key 'lrr'",
                "sweep run ctl-bad-2: config configs/tiny.yaml with overrides: operator.lr: expected float")


def test_a_passphrase_key_without_an_agent_fails_before_renting(ansible, emulator, tmp_path):
    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True)
    result = run_checked(ansible, emulator, "-e", "config=tiny", "-e", f"ssh_key_file={key}", may_call_api=False,
                         unset=("SSH_AUTH_SOCK",))
    assert_says(result, f"{key} is protected by a passphrase and ssh-agent does not hold it", f"ssh-add {key}")


def test_a_dirty_tree_fails_code_source_git(ansible, emulator, tmp_path):
    """A clone of this checkout (its origin is this checkout, which has the commit) with an uncommitted edit;
    the playbook of the working tree runs from the clone, so that the clone is the checkout being launched."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(clone)], check=True)
    shutil.copy(REPO / "launch.yml", clone / "launch.yml")
    shutil.rmtree(clone / "playbooks")
    shutil.copytree(REPO / "playbooks", clone / "playbooks")
    with (clone / "README.md").open("a") as readme:
        readme.write("\nan edit that is not committed\n")
    seq = last_seq(emulator)
    result = ansible.playbook(str(clone / "launch.yml"), "--check", "-e", "config=tiny", "-e", "run_name=ctl-dirty",
                              "-e", "code_source=git")
    assert result.rc != 0, result.out
    assert_says(result, "but the working tree has uncommitted changes to", "README.md",
                "-e code_source=local (uploads the tree as it is), or -e allow_dirty=true")
    assert api_requests_since(emulator, seq) == []


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
    result = ansible.playbook("launch.yml", "-e", "config=tiny", "-e", "run_name=ctl-bad",
                              "-e", "code_source=local")  # provision on
    assert result.rc != 0, result.out
    assert "The Vast account lacks the env-vars B2_KEY_ID, B2_APP_KEY" in result.out
    assert "playbooks/setup_env.yml" in result.out
    assert creates_since(emulator, seq) == [] and writes_since(emulator, seq) == []
