"""The launch options of `ssh <run>` and `runtype`: typed and mapped in planning, before any API call."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

import training.config as training_config
from vastkit import planning
from vastkit.sshkey import KeyCheck

REPO = Path(__file__).resolve().parents[2]


def plan(**options):
    given = {"config": "tiny", "provision": "false", **options}
    return planning.plan_launch(given, repo_root=REPO, configs=training_config,
                                now=datetime(2026, 11, 28, 14, 5, tzinfo=timezone.utc),
                                check_key=lambda path: KeyCheck(), git_timeout=10)


@pytest.mark.parametrize(("word", "api"), [("ssh", "ssh_direc ssh_proxy"), ("ssh_proxy", "ssh_proxy"),
                                           ("jupyter", "jupyter_direc ssh_direc ssh_proxy")])
def test_runtype_words_map_to_the_api_strings(word, api):
    result = plan(runtype=word)
    assert result.errors == []
    assert result.playbook_options()["runtype"] == word and result.playbook_options()["runtype_api"] == api


def test_runtype_defaults_to_ssh_and_a_raw_api_string_is_refused_with_the_choices():
    assert plan().playbook_options()["runtype_api"] == "ssh_direc ssh_proxy"
    assert plan(runtype="ssh_direc ssh_proxy").errors == [
        "runtype=ssh_direc ssh_proxy: not one of the choices; allowed: ssh, ssh_proxy, jupyter"]


def test_the_ssh_config_paths_default_under_home_and_expand_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    options = plan().playbook_options()
    assert options["ssh_config_dir"] == f"{tmp_path}/.ssh/universal_simulator"
    assert options["ssh_config_file"] == f"{tmp_path}/.ssh/config"
    assert plan(ssh_config_dir="~/elsewhere").playbook_options()["ssh_config_dir"] == f"{tmp_path}/elsewhere"
    assert plan(ssh_config_file="").errors[0].startswith("ssh_config_file=: empty")
