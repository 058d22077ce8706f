"""pyproject's extras fit their machines: the controller's has no training stack, the instance's has all of it."""

from __future__ import annotations

from pathlib import Path

import tomllib

from instance_agent.requirements import instance_requirements, requirement_name

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
TRAINING_STACK = {"torch", "wandb", "h5py", "neuraloperator", "matplotlib", "numpy"}


def names(requirements) -> set[str]:
    return {requirement_name(r) for r in requirements}


def test_the_controller_install_has_no_training_stack():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    controller = names(project["dependencies"]) | names(project["optional-dependencies"]["controller"])
    assert {"ansible-core", "vastai", "paramiko", "boto3"} <= controller
    assert controller.isdisjoint(TRAINING_STACK)


def test_the_instance_gets_the_training_stack_but_not_torch_or_ansible():
    got = names(instance_requirements(PYPROJECT))
    assert TRAINING_STACK - {"torch"} <= got  # matplotlib too: training/evaluation/plots.py runs there
    assert got.isdisjoint({"torch", "ansible-core", "paramiko"})


def test_dev_installs_both_sides():
    dev = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["dev"]
    assert "universal-simulator[controller,instance]" in dev
