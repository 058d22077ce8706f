"""The universal_simulator.vastai collection: ansible-test sanity, and how it is found outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible_test._internal.python_requirements import get_venv_packages
from ctl_support import REPO, SCRUBBED, VENV_BIN

COLLECTION = REPO / "collections" / "ansible_collections" / "universal_simulator" / "vastai"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# ansible-test makes a virtual environment per sanity test and bootstraps pip into each with get-pip.py, which
# it downloads from the internet unless ~/.ansible/test/cache has it. This stand-in does the same offline: pip
# from the standard library's ensurepip, then the packages asked for from the configured index.
GET_PIP = """\
import subprocess, sys
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-m", "pip", "install", *(a for a in sys.argv[1:] if a not in GET_PIP_ONLY)],
               check=True)
if "--no-setuptools" in sys.argv:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True)
"""


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **extra)
    return env


@pytest.mark.slow
def test_ansible_test_sanity_passes():
    # Its own home, so the user's ~/.ansible is left alone; the sanity venvs in it are reused by later runs.
    home = REPO / ".cache" / "ansible-test-home"
    pip = get_venv_packages(SimpleNamespace(version=PYTHON))["pip"]
    get_pip = home / ".ansible" / "test" / "cache" / f"get_pip_{pip.replace('.', '_')}.py"
    get_pip.parent.mkdir(parents=True, exist_ok=True)
    get_pip.write_text(GET_PIP)
    # pip still reads the user's own config (an index of their own) from the real home.
    env = clean_env(HOME=str(home), XDG_CONFIG_HOME=os.environ.get("XDG_CONFIG_HOME", str(Path.home() / ".config")))
    run = subprocess.run([str(VENV_BIN / "ansible-test"), "sanity", "--local", "--python", PYTHON, "--color", "no"],
                         cwd=COLLECTION, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=540)
    assert run.returncode == 0, run.stdout[-6000:]


def test_the_docs_render_from_any_directory(tmp_path):
    """No ansible.cfg there: the venv's sys.path has the collection (make venv)."""
    env = clean_env(HOME=str(tmp_path))
    for args in (["universal_simulator.vastai.vast_instance"], ["-t", "inventory", "universal_simulator.vastai.vast"]):
        doc = subprocess.run([str(VENV_BIN / "ansible-doc"), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
        assert doc.returncode == 0 and str(COLLECTION) in doc.stdout, doc.stdout[-3000:]


def test_ansible_galaxy_installs_it_from_its_directory(tmp_path):
    """What a machine without this repo's venv does; the venv's own copy is kept out of sight."""
    env = clean_env(HOME=str(tmp_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                    ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"))
    install = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", str(COLLECTION), "-p",
                              str(tmp_path / "collections")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
    assert install.returncode == 0, install.stdout
    installed = tmp_path / "collections" / "ansible_collections" / "universal_simulator" / "vastai"
    doc = subprocess.run([str(VENV_BIN / "ansible-doc"), "universal_simulator.vastai.vast_launch_plan"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=120)
    assert doc.returncode == 0 and str(installed) in doc.stdout, doc.stdout[-3000:]
