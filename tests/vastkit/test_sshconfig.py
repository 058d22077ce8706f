"""`ssh <run>`: the per-run SSH config entry, used for real by OpenSSH against an emulator instance."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vastkit import sshconfig
from vastkit.client import VastAPI
from vastkit.query import OfferFilter
from vastkit.retry import RetryPolicy
from vastkit.sshconfig import SshConfigError, SshEntry
from vastkit.waiting import wait_until_ready

REPO = Path(__file__).resolve().parents[2]
RUN = "vk-sshcfg-run"


@pytest.fixture
def instance(emulator, ssh_keypair):
    """A running emulator instance (real sshd) labelled RUN; destroyed afterwards."""
    api = VastAPI.from_env(url=emulator.url, api_key=emulator.api_key,
                           retry=RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2))
    offer = api.search_offers(OfferFilter(num_gpus=1), limit=1)[0]
    created = api.create_instance(offer.id, disk_gb=16, label=RUN)
    try:
        yield wait_until_ready(api, created.id, timeout=90, key_file=str(ssh_keypair.private_key), poll=0.3)
    finally:
        api.destroy_instance(created.id)


def ssh(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_ssh_run_logs_in_in_batch_mode_and_is_gone_after_removal(instance, ssh_keypair, tmp_path):
    host, port = instance.ssh_address()
    known_hosts = tmp_path / "known_hosts" / str(instance.id)
    known_hosts.parent.mkdir(mode=0o700)
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ServerAliveCountMax 4\n")  # a Host block: an Include appended here is scoped
    config.chmod(0o600)
    entries = tmp_path / "entries"
    entry = SshEntry(run=RUN, host=host, port=port, identity_file=str(ssh_keypair.private_key),
                     known_hosts_file=str(known_hosts))

    assert sshconfig.write_entry(entry, entries) and sshconfig.ensure_include(config, entries)
    assert not sshconfig.write_entry(entry, entries) and not sshconfig.ensure_include(config, entries)
    text = config.read_text()
    assert text.count("Include ") == 1 and text.index("Include ") < text.index("Host *")
    assert text.endswith("Host *\n  ServerAliveCountMax 4\n"), "the user's own config is kept"
    assert oct((entries / RUN).stat().st_mode & 0o777) == "0o600"

    first = ssh(config, RUN, "echo answer-$((6*7))")
    assert first.returncode == 0 and first.stdout.strip() == "answer-42", first.stderr
    assert known_hosts.read_text().strip(), "accept-new stored the instance's host key in its own file"
    again = ssh(config, RUN, "true")  # the stored key now verifies, still no prompt
    assert again.returncode == 0, again.stderr
    # The tmux line the launch summary prints parses and reaches the same host (no session here: it says so).
    tmux = ssh(config, RUN, "-t", "tmux", "attach", "-t", "training")
    assert tmux.returncode != 255, tmux.stderr  # 255 is ssh's own failure; anything else came from the host

    assert sshconfig.remove_entry(entries, RUN) and not sshconfig.remove_entry(entries, RUN)
    assert list(entries.iterdir()) == []
    gone = ssh(config, RUN, "true")
    assert gone.returncode == 255 and "Could not resolve hostname" in gone.stderr


def test_the_include_goes_above_every_host_block_once(tmp_path):
    entries = tmp_path / "my entries"  # a space: the Include's path is quoted
    config = tmp_path / "config"
    config.write_text(f"Host box\n  Include \"{entries}/*\"\n")  # scoped to `box`: does not count
    assert sshconfig.ensure_include(config, entries)
    lines = config.read_text().splitlines()
    assert lines[0] == sshconfig.MARKER and lines[1] == f'Include "{entries}/*"'
    assert not sshconfig.ensure_include(config, entries)
    assert config.read_text().count(f'Include "{entries}/*"') == 2  # ours at the top, the user's left alone


def test_an_include_the_user_wrote_with_tilde_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "config"
    config.write_text("Include ~/.ssh/universal_simulator/*\nHost *\n  User me\n")
    assert not sshconfig.ensure_include(config, sshconfig.DEFAULT_DIR)


def test_a_new_config_is_private_and_a_symlinked_one_stays_a_symlink(tmp_path):
    fresh = tmp_path / "dot-ssh" / "config"
    assert sshconfig.ensure_include(fresh, tmp_path / "entries")
    assert oct(fresh.stat().st_mode & 0o777) == "0o600" and oct(fresh.parent.stat().st_mode & 0o777) == "0o700"
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_text("Host *\n")
    real.chmod(0o640)
    link = tmp_path / "linked"
    link.symlink_to(real)
    assert sshconfig.ensure_include(link, tmp_path / "entries")
    assert link.is_symlink() and "Include" in real.read_text() and oct(real.stat().st_mode & 0o777) == "0o640"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("run", "../escape", "run name"),
    ("run", "a b", "run name"),
    ("host", "evil\n  ProxyCommand x", "host name or IP"),
    ("port", 0, "from 1 to 65535"),
    ("port", "22", "from 1 to 65535"),
    ("identity_file", "relative/key", "absolute path"),
    ("known_hosts_file", '/tmp/a"b', "quote or a line break"),
])
def test_values_ssh_would_misread_are_refused(field, value, says):
    good = dict(run="r1", host="127.0.0.1", port=2222, identity_file="/k", known_hosts_file="/kh/1")
    with pytest.raises(SshConfigError, match=says):
        SshEntry(**{**good, field: value})


def test_the_module_honours_check_mode_and_is_idempotent(tmp_path):
    """One playbook (ansible starts once): check mode, write, rewrite, remove, remove again."""
    config, entries, out = tmp_path / "config", tmp_path / "entries", tmp_path / "results.json"
    common = {"name": RUN, "config_dir": str(entries), "ssh_config": str(config)}
    present = {**common, "host": "10.0.0.7", "port": 40022, "identity_file": "/k", "known_hosts_file": "/kh/7"}
    steps = [("planned", present, True), ("written", present, False), ("rewritten", present, False),
             ("removed", {**common, "state": "absent"}, False), ("removed_again", {**common, "state": "absent"}, False)]
    tasks = [{"name": name, "universal_simulator.vastai.vast_ssh_config": args, "check_mode": check,
              "register": name} for name, args, check in steps]
    tasks.insert(1, {"name": "files after check mode", "ansible.builtin.stat": {"path": str(config)},
                     "register": "after_check"})
    registered = ", ".join(name for name, _, _ in steps)
    tasks.append({"name": "save", "ansible.builtin.copy": {
        "dest": str(out), "mode": "0600",
        "content": "{{ {'after_check': after_check.stat.exists, 'steps': [" + registered + "]} | to_json }}"}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(playbook)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    saved = json.loads(out.read_text())
    planned, written, rewritten, removed, removed_again = saved["steps"]
    assert planned["changed"] and planned["include_added"] and not saved["after_check"]
    assert written["changed"] and written["include_added"] and written["ssh_command"] == f"ssh {RUN}"
    assert not rewritten["changed"] and not rewritten["include_added"]
    assert removed["changed"] and not removed_again["changed"]
    assert not (entries / RUN).exists() and config.read_text().count("Include ") == 1
