"""Launch planning decisions (vastkit.planning, gitcheck, sshkey, codetree): fast, no API, no ansible-playbook."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

import training.config as training_config
from run_contract import MAX_RUN_NAME
from vastkit import codetree, gitcheck, planning
from vastkit.records import Offer
from vastkit.sshkey import KeyCheck, check_launch_key

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, 14, 5, tzinfo=timezone.utc)


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small checkout with configs/tiny.yaml committed, and a bare 'origin' that has its commit."""
    root = tmp_path / "repo"
    (root / "configs" / "sweeps").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "tiny.yaml", root / "configs" / "tiny.yaml")
    (root / "train.py").write_text("print('hi')\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "origin", "main")
    return root


def plan(root: Path, **options):
    given = {"config": "tiny", "provision": "false", **options}
    return planning.plan_launch(given, repo_root=root, configs=training_config, now=NOW,
                                check_key=lambda path: KeyCheck(), git_timeout=10)


def one_error(result) -> str:
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


# -- option names and values ------------------------------------------------------------------------------


def test_a_misspelled_option_is_an_error_with_a_suggestion(repo):
    result = plan(repo, gpus="H100_PCIE", max_prcie="0.5")
    assert "unknown option gpus: did you mean gpu or num_gpus?" in result.errors[0]
    assert "unknown option max_prcie: did you mean max_price?" in result.errors[1]


def test_a_name_like_no_option_lists_the_options(repo):
    assert "no launch option has that name; they are: allow_dirty, auto_shutdown" in one_error(plan(repo, zzz="1"))


def test_ansibles_own_variables_are_not_launch_options(repo):
    assert plan(repo, ansible_python_interpreter="/usr/bin/python3").errors == []


@pytest.mark.parametrize("name, value", [("auto_shutdown", "ture"), ("provision", "flase"), ("interruptible", "2"),
                                         ("allow_dirty", "maybe")])
def test_booleans_are_strict(repo, name, value):
    assert one_error(plan(repo, **{name: value})) == f"{name}={value}: not a boolean; allowed: true or false"


@pytest.mark.parametrize("value, expected", [("true", True), ("False", False), ("yes", True), ("0", False),
                                             (True, True), (0, False)])
def test_boolean_spellings_ansible_accepts(repo, value, expected):
    assert plan(repo, auto_shutdown=value).options["auto_shutdown"] is expected


@pytest.mark.parametrize("given, message", [
    ({"disk": "4"}, "disk=4: too small; allowed: a number from 8 to 8192 GB"),
    ({"num_gpus": "1.5"}, "num_gpus=1.5: not a whole number; allowed: a whole number from 1 to 16"),
    ({"min_reliability": "1.2"}, "min_reliability=1.2: too large; allowed: a number from 0 to 1"),
    ({"max_price": "0"}, "max_price=0: too small; allowed: a number > 0 and <= 1000 USD/h"),
    ({"max_price": "cheap"}, "max_price=cheap: not a number"),
    ({"stage": "pretrain"}, "stage=pretrain: not one of the choices; allowed: all, autoencoder, cache, operator"),
    ({"reset_cache": "2"}, "reset_cache=2: not one of the choices; allowed: 0, 1"),
    ({"code_source": "svn"}, "code_source=svn: not one of the choices; allowed: git, local"),
    ({"offer_id": ""}, "offer_id=: empty (an unset shell variable?)"),
    ({"lease_minutes": "0"}, "lease_minutes=0: too small; allowed: a number > 0 and <= 1440 minutes"),
    ({"max_attempts": "nan"}, "max_attempts=nan: not a whole number"),
    ({"pipeline_env": "[1]"}, "pipeline_env=[1]: not a mapping"),
    ({"image": "vastai/pytorch; rm -rf /"}, "image=vastai/pytorch; rm -rf /: not a Docker image reference"),
])
def test_each_option_is_typed_and_ranged_with_its_own_message(repo, given, message):
    assert one_error(plan(repo, **given)).startswith(message)


def test_typed_extra_vars_are_taken_as_they_are(repo):
    result = plan(repo, count=2, max_price=0.5, disk=16.0, pipeline_env={"TRAIN_FAIL_AT_STAGE": "operator"})
    assert result.errors == []
    assert (result.options["count"], result.options["max_price"], result.options["disk"]) == (2, 0.5, 16.0)


@pytest.mark.parametrize("given, message", [
    ({"interruptible": "true"}, "interruptible=true needs bid=USD/h"),
    ({"bid": "0.3"}, "bid=0.3 rents an interruptible instance: add -e interruptible=true"),
    ({"sweep": "x.yaml", "count": "2"}, "sweep and count cannot be combined"),
    ({"loading_timeout": "900", "wait_timeout": "600"}, "wait_timeout=600 is shorter than loading_timeout=900"),
])
def test_options_that_do_not_go_together(repo, given, message):
    assert any(message in e for e in plan(repo, **given).errors)


# -- config, sweep, run names -------------------------------------------------------------------------------


def test_an_unknown_config_names_the_available_ones_and_the_closest(repo):
    error = one_error(plan(repo, config="tinyy"))
    assert error.startswith("Unknown config tinyy (configs/tinyy.yaml does not exist). did you mean tiny?")
    assert "Available configs: tiny." in error


def test_a_config_outside_the_repository_is_refused(repo, tmp_path):
    (tmp_path / "mine.yaml").write_text("name: x\n")
    assert "is outside the repository" in one_error(plan(repo, config=str(tmp_path / "mine.yaml")))


def test_no_config_says_how_to_name_one(repo):
    result = planning.plan_launch({"provision": "false"}, repo_root=repo, configs=training_config, now=NOW,
                                  check_key=lambda path: KeyCheck())
    assert one_error(result).startswith("Say which config to train: -e config=NAME, one of: tiny")


def test_a_bad_config_key_in_the_file_fails_with_the_dotted_key(repo):
    (repo / "configs" / "broken.yaml").write_text("operator:\n  lrr: 0.1\n")
    assert "config configs/broken.yaml: operator.lrr: unknown key" in one_error(plan(repo, config="broken"))


def test_the_default_run_name_is_the_config_and_the_utc_minute(repo):
    result = plan(repo)
    assert [r.name for r in result.runs] == ["tiny-20261128-1405"]
    assert result.runs[0].train_config == "configs/tiny.yaml"


def test_a_run_name_longer_than_the_instance_side_allows_fails_here(repo):
    assert "must be 1-128 characters" in one_error(plan(repo, run_name="r" * (MAX_RUN_NAME + 1)))
    assert plan(repo, run_name="r" * MAX_RUN_NAME).errors == []


def test_a_fleet_name_counts_its_suffix(repo):
    error = one_error(plan(repo, run_name="r" * (MAX_RUN_NAME - 1), count="2"))
    assert error.startswith(f"run_name={'r' * (MAX_RUN_NAME - 1)}: too long for 2 runs")


def test_a_fleet_is_numbered(repo):
    assert [r.name for r in plan(repo, run_name="f", count="3").runs] == ["f-1", "f-2", "f-3"]


def test_more_than_eight_runs_need_a_confirmation(repo):
    assert "count=9: that rents 9 paid instances at once; say -e confirm_count=true" in one_error(plan(repo, count="9"))
    assert len(plan(repo, count="9", confirm_count="true").runs) == 9
    assert "too large" in one_error(plan(repo, count="65", confirm_count="true"))


def write_sweep(repo: Path, text: str) -> str:
    path = repo / "configs" / "sweeps" / "s.yaml"
    path.write_text(text)
    return "s"


def test_a_sweep_gives_each_run_its_validated_overrides(repo):
    sweep = write_sweep(repo, "config: tiny\nruns:\n  - overrides: {operator.lr: 1e-3}\n  - {}\n")
    result = plan(repo, sweep=sweep, run_name="lr")
    assert result.errors == []
    assert [(r.name, r.overrides) for r in result.runs] == [("lr-1", {"operator.lr": 0.001}), ("lr-2", {})]


@pytest.mark.parametrize("overrides, message", [
    ("{operator.lrr: 0.1}", "sweep run lr-1: config configs/tiny.yaml with overrides: override operator.lrr: "
                            "operator has no key 'lrr'"),
    ("{operator.lr: fast}", "sweep run lr-1: config configs/tiny.yaml with overrides: operator.lr: expected float, "
                            "got str ('fast')"),
    ("{operator: 3}", "operator: expected a mapping, got int"),
])
def test_a_bad_sweep_override_fails_with_the_dotted_key(repo, overrides, message):
    sweep = write_sweep(repo, f"runs:\n  - overrides: {overrides}\n")
    assert message in one_error(plan(repo, sweep=sweep, run_name="lr"))


@pytest.mark.parametrize("text, message", [
    ("runs: []\n", "runs is missing or empty"),
    ("config: tiny\nrun: []\n", "unknown key run (did you mean runs?)"),
    ("runs:\n  - overides: {a: 1}\n", "runs[0]: unknown key overides (did you mean overrides?)"),
    ("runs:\n  - overrides: [1]\n", "runs[0].overrides is not a mapping"),
    ("runs:\n  - config: nope\n", "sweep run lr-1: Unknown config nope"),
])
def test_a_malformed_sweep_file_says_what_shape_it_needs(repo, text, message):
    error = one_error(plan(repo, sweep=write_sweep(repo, text), run_name="lr"))
    assert message in error


def test_an_unknown_sweep_is_named(repo):
    assert "Unknown sweep nope" in one_error(plan(repo, sweep="nope"))


# -- what the playbook gets ---------------------------------------------------------------------------------


def test_the_lease_is_handed_on_in_seconds(repo):
    assert plan(repo).playbook_options()["lease_s"] == 1800
    assert plan(repo, lease_minutes="0.5").playbook_options()["lease_s"] == 30


def test_unset_optional_options_are_empty_strings_for_the_playbook(repo):
    view = plan(repo).playbook_options()
    assert view["max_price"] == "" and view["offer_id"] == "" and view["gpu"] == "RTX_4090"


def test_an_interruptible_search_only_finds_offers_the_bid_can_rent(repo):
    args = plan(repo, interruptible="true", bid="0.2", gpu="any").search_args()
    assert args["query"] == "min_bid<=0.2" and args["interruptible"] is True and "gpu_name" not in args


def test_a_single_run_on_an_offer_needs_no_search(repo):
    assert plan(repo, offer_id="7").search_args() is None
    fleet = plan(repo, offer_id="7", count="3")
    assert fleet.search_args()["limit"] == 6 and [r.offer_id for r in fleet.runs] == [7, None, None]


# -- offer_id -----------------------------------------------------------------------------------------------


def offer(**fields) -> Offer:
    row = dict(id=7, machine_id=1, gpu_name="H100 PCIE", num_gpus=2, dph_total=2.5, reliability=0.99,
               disk_space=500.0, min_bid=1.2, **fields)
    return Offer.from_api(row)


def test_an_offer_id_keeps_its_gpu_for_the_failover(repo):
    result = plan(repo, offer_id="7")
    assert planning.check_offer(offer(), result) == []
    assert (result.options["gpu"], result.options["num_gpus"]) == ("H100_PCIE", 2)


@pytest.mark.parametrize("given, message", [
    ({"gpu": "RTX_4090"}, "offer_id=7 is a H100_PCIE offer, not gpu=RTX_4090"),
    ({"num_gpus": "1"}, "offer_id=7 has 2 GPU(s), not num_gpus=1"),
    ({"max_price": "2"}, "offer_id=7 costs $2.5000/h with 64 GB disk, above max_price=2"),
    ({"interruptible": "true", "bid": "1"}, "bid=1 is below offer 7's min_bid of $1.2000/h"),
    ({"disk": "600"}, "offer_id=7 has 500 GB free, less than disk=600"),
    ({"min_reliability": "0.995"}, "offer_id=7 has reliability 0.9900, below min_reliability=0.995"),
])
def test_an_offer_id_is_checked_against_the_other_options(repo, given, message):
    problems = planning.check_offer(offer(), plan(repo, offer_id="7", **given))
    assert len(problems) == 1 and problems[0].startswith(message), problems


@pytest.mark.parametrize("image, cuda, refused", [
    ("vastai/pytorch:@vastai-automatic-tag", 12.2, True),  # below the automatic tag's oldest build
    ("vastai/pytorch:@vastai-automatic-tag", 12.6, False),
    ("vastai/pytorch:cuda-12.8.1-auto", 12.6, True),
    ("vastai/pytorch:cuda-12.8.1-auto", 12.8, False),
    ("myorg/trainer:latest", 11.0, False),  # a tag that names no CUDA: nothing to judge
])
def test_an_offer_id_whose_driver_cannot_start_the_image_is_refused(repo, image, cuda, refused):
    problems = planning.check_offer(offer(cuda_max_good=cuda), plan(repo, offer_id="7", image=image))
    assert bool(problems) == refused, problems
    if refused:
        assert f"runs CUDA up to {cuda:g}, but image {image} needs CUDA" in problems[0]
        assert "OCI runtime create failed" in problems[0] and "cuda_max_good>=" in problems[0]


def test_a_gpu_spelled_either_way_matches_the_offer(repo):
    assert planning.check_offer(offer(), plan(repo, offer_id="7", gpu="h100 pcie")) == []


def test_an_offer_that_is_gone_says_how_to_find_another(repo):
    assert "no such on-demand offer is available now" in planning.check_offer(None, plan(repo, offer_id="7"))[0]


# -- the launch key -----------------------------------------------------------------------------------------


def keypair(tmp_path: Path, name: str = "id_ed25519", passphrase: str = "") -> Path:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


def no_agent() -> dict:
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}


def test_a_plain_private_key_passes(tmp_path):
    assert check_launch_key(keypair(tmp_path), env=no_agent()) == KeyCheck()


def test_a_missing_key_says_how_to_make_one(tmp_path):
    assert "ssh-keygen -t ed25519 -N '' -f" in check_launch_key(tmp_path / "none", env=no_agent()).problem


def test_a_key_others_can_read_is_refused_as_ssh_would(tmp_path):
    key = keypair(tmp_path)
    key.chmod(0o644)
    assert f"Fix: chmod 600 {key}" in check_launch_key(key, env=no_agent()).problem


def test_a_passphrase_key_without_an_agent_is_refused_before_renting(tmp_path):
    key = keypair(tmp_path, passphrase="secret phrase")
    problem = check_launch_key(key, env=no_agent()).problem
    assert "is protected by a passphrase and ssh-agent does not hold it" in problem and f"ssh-add {key}" in problem


def test_a_passphrase_key_the_agent_holds_passes(tmp_path):
    key = keypair(tmp_path, passphrase="secret phrase")
    agent = subprocess.run(["ssh-agent", "-a", str(tmp_path / "agent.sock")], capture_output=True, text=True,
                           check=True).stdout
    pid = int(agent.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    env = {**no_agent(), "SSH_AUTH_SOCK": str(tmp_path / "agent.sock"), "SSH_ASKPASS": str(tmp_path / "pass.sh"),
           "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    (tmp_path / "pass.sh").write_text("#!/bin/sh\necho 'secret phrase'\n")
    (tmp_path / "pass.sh").chmod(0o700)
    try:
        subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        assert check_launch_key(key, env=env) == KeyCheck(via_agent=True)
    finally:
        os.kill(pid, 15)


def test_a_pub_of_another_key_is_refused(tmp_path):
    key, other = keypair(tmp_path), keypair(tmp_path, "other")
    shutil.copy(f"{other}.pub", f"{key}.pub")
    assert "is not the public half of" in check_launch_key(key, env=no_agent()).problem


# -- code_source=git ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, clean", [
    ("git@github.com:owner/repo.git", "https://github.com/owner/repo.git"),
    ("ssh://git@github.com:22/owner/repo", "https://github.com/owner/repo"),
    ("https://github.com/owner/repo", "https://github.com/owner/repo"),
    ("git://127.0.0.1:9418/main", "git://127.0.0.1:9418/main"),
])
def test_clone_urls_become_anonymous(url, clean):
    assert gitcheck.clone_url(url).url == clean and gitcheck.clone_url(url).problem is None


@pytest.mark.parametrize("url", ["https://user:ghp_TOKEN123@github.com/o/r.git", "https://ghp_TOKEN123@github.com/o/r"])
def test_a_url_with_credentials_is_refused_and_never_shown(url):
    checked = gitcheck.clone_url(url)
    assert "carries credentials" in checked.problem and "TOKEN123" not in checked.problem + checked.url
    assert checked.url.startswith("https://github.com/o/r")


def git_plan(repo: Path, **options):
    return plan(repo, provision="true", code_source="git", **options)


def test_a_clean_pushed_checkout_passes(repo):
    result = git_plan(repo)
    assert result.errors == [] and result.code_version == git(repo, "rev-parse", "HEAD")
    assert result.code_repo == str(repo.parent / "origin.git")


def test_a_dirty_tree_is_an_error_unless_allowed(repo):
    (repo / "train.py").write_text("print('changed')\n")
    error = one_error(git_plan(repo))
    assert "uncommitted changes to 1 tracked file(s) (train.py)" in error and "-e allow_dirty=true" in error
    allowed = git_plan(repo, allow_dirty="true")
    assert allowed.errors == [] and any("without the uncommitted changes to train.py" in n for n in allowed.notes)


def test_an_untracked_config_is_an_error_even_when_dirt_is_allowed(repo):
    (repo / "configs" / "new.yaml").write_text("name: new\n")
    error = one_error(git_plan(repo, config="new", allow_dirty="true"))
    assert error.startswith("config configs/new.yaml is not in commit")


def test_an_unpushed_commit_is_an_error(repo):
    (repo / "train.py").write_text("print('next')\n")
    git(repo, "commit", "-qam", "second")
    assert "is not on " in one_error(git_plan(repo)) and "git push it first" in one_error(git_plan(repo))


def test_an_ancestor_of_a_pushed_branch_is_on_the_remote(repo):
    first = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('next')\n")
    git(repo, "commit", "-qam", "second")
    git(repo, "push", "-q", "origin", "main")
    assert git_plan(repo, code_version=first).errors == []


def test_no_origin_says_what_to_do(repo):
    git(repo, "remote", "remove", "origin")
    assert "has no origin remote" in one_error(git_plan(repo))


def test_an_unreadable_remote_is_an_error(repo, tmp_path):
    assert "cannot be read without credentials" in one_error(git_plan(repo, code_repo=str(tmp_path / "nothing")))


def test_an_unknown_code_version_is_an_error(repo):
    assert one_error(git_plan(repo, code_version="0" * 40)) == f"code_version={'0' * 40}: no such commit in this checkout"


def test_no_git_checks_without_provisioning(repo):
    (repo / "train.py").write_text("print('changed')\n")
    git(repo, "remote", "remove", "origin")
    assert plan(repo, code_source="git").errors == []


# -- code_source=local --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".env", ".env.local", ".envrc", "deploy.pem", "id_ed25519", "id_rsa.pub",
                                  "aws_credentials", "tls.key", ".netrc", "sub/dir/.env.prod"])
def test_files_that_look_like_secrets(name):
    assert codetree.looks_secret(name)


@pytest.mark.parametrize("name", ["id_map.py", "environment.py", "keys.md", "vast_env_var.py", "monkey.yaml"])
def test_files_that_do_not(name):
    assert not codetree.looks_secret(name)


def test_local_code_leaves_secrets_out_and_says_so(repo):
    for name in (".envrc", ".env.local", "id_ed25519"):
        (repo / name).write_text("SECRET=1\n")
    result = plan(repo, provision="true", code_source="local")
    assert result.errors == [] and result.left_out == [".env.local", ".envrc", "id_ed25519"]
    assert "not uploading 3 file(s) that look like secrets: .env.local, .envrc, id_ed25519" in result.notes[0]


def test_the_packed_tree_has_no_secret_files(repo, tmp_path):
    from tools.packtree import pack

    (repo / ".envrc").write_text("export TOKEN=1\n")
    packed = pack(repo, tmp_path / "tree.tar.gz")
    assert ".envrc" not in packed["names"] and packed["left_out"] == [".envrc"] and "train.py" in packed["names"]


def test_a_config_local_code_would_not_upload_is_an_error(repo):
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "ignored").mkdir()
    shutil.copy(repo / "configs" / "tiny.yaml", repo / "ignored" / "tiny.yaml")
    error = one_error(plan(repo, provision="true", code_source="local", config="ignored/tiny.yaml"))
    assert error.startswith("config ignored/tiny.yaml would not be uploaded by code_source=local")


def test_the_docs_table_lists_exactly_the_launch_options():
    text = (REPO / "docs" / "control-plane.md").read_text()
    table = text.split("## launch.yml options", 1)[1].split("\n\n| option |", 1)[1].split("\n\n", 1)[0]
    documented = [row.split("|")[1].strip().strip("`") for row in table.splitlines()[2:]]
    assert [name for name in documented if not name.startswith("*")] == list(planning.LAUNCH_OPTIONS)
