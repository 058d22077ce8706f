"""The project's runtime requirements for an instance, read from pyproject.toml.

The image brings torch (built for its CUDA) and the controller brings Ansible: neither is installed here.
The bootstrap role installs the result with a constraint pinning the image's torch, so nothing can upgrade it.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

# Not needed on the instance: torch comes with the image; Ansible and paramiko run on the controller.
INSTANCE_EXCLUDES = ("torch", "ansible-core", "paramiko")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def instance_requirements(pyproject: Path, exclude: tuple[str, ...] = INSTANCE_EXCLUDES) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    excluded = {requirement_name(name) for name in exclude}
    return [req for req in dependencies if requirement_name(req) not in excluded]
