"""The project's runtime requirements for an instance, read from pyproject.toml.

The image brings torch (built for its CUDA) and the controller brings Ansible: neither is installed here.
The bootstrap role installs the result with a constraint pinning the image's torch, so nothing can upgrade it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import tomllib

# Not needed on the instance: torch comes with the image; Ansible and paramiko run on the controller.
INSTANCE_EXCLUDES = ("torch", "ansible-core", "paramiko")
PROJECT = "universal-simulator"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


INSTANCE_EXTRA = "instance"  # pyproject's extra with what training needs (the controller's has no torch)


def instance_requirements(pyproject: Path, exclude: tuple[str, ...] = INSTANCE_EXCLUDES) -> list[str]:
    """The project's dependencies plus its `instance` extra, less what the image or the controller brings."""
    project = tomllib.loads(pyproject.read_text())["project"]
    dependencies = [*project["dependencies"], *project.get("optional-dependencies", {}).get(INSTANCE_EXTRA, [])]
    excluded = {requirement_name(name) for name in exclude}
    return [req for req in dependencies if requirement_name(req) not in excluded]


class InstallError(RuntimeError):
    """uv could not install the requirements, or would have changed the image's torch."""


@dataclass(frozen=True)
class InstallReport:
    changed: bool
    torch: str | None  # the image's torch, unchanged
    requirements: list[str]
    project: str  # "installed" (editable, no deps) or "present"
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def install_requirements(code_dir: Path, state_dir: Path, *, python: str = sys.executable, uv: str | None = None,
                         timeout: float = 1200) -> InstallReport:
    """Install what the instance needs into `python`'s environment, torch pinned to what is there already.

    Runs inside that environment (its `importlib.metadata` is the truth about the installed torch). The project
    itself goes in editable and without dependencies, so `instance-agent` is on PATH and code updates
    need no reinstall.
    """
    started = time.monotonic()
    sibling = Path(python).parent / "uv"  # the venv's own uv (the role installs it there) before any on PATH
    uv = uv or (str(sibling) if sibling.exists() else shutil.which("uv") or "uv")
    requirements = instance_requirements(code_dir / "pyproject.toml")
    torch = installed_version("torch")
    state_dir.mkdir(parents=True, exist_ok=True)
    req_file, constraints = state_dir / "requirements.txt", state_dir / "constraints.txt"
    req_file.write_text("".join(f"{r}\n" for r in requirements))
    constraints.write_text(f"torch=={torch}\n" if torch else "")
    out = _uv(uv, ["pip", "install", "--python", python, "-r", str(req_file), "-c", str(constraints)], timeout)
    changed = bool(re.search(r"^\s*(Installed|Uninstalled) ", out, re.MULTILINE))
    project = "present"
    if not _editable_points_at(code_dir):
        _uv(uv, ["pip", "install", "--python", python, "--no-deps", "-e", str(code_dir)], timeout)
        project, changed = "installed", True
    if installed_version("torch") != torch:
        raise InstallError(f"torch changed from {torch} to {installed_version('torch')}: a requirement pulled it; "
                           "pin it in pyproject.toml to a range the image satisfies")
    return InstallReport(changed=changed, torch=torch, requirements=requirements, project=project,
                         seconds=round(time.monotonic() - started, 3))


def _editable_points_at(code_dir: Path) -> bool:
    """The project is installed editable from `code_dir` (looked up in site-packages only: the code dir's own
    `*.egg-info`, left by the editable build, would otherwise answer first from the current directory)."""
    for dist in metadata.distributions(name=PROJECT, path=[sysconfig.get_paths()["purelib"]]):
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        if info.get("dir_info", {}).get("editable") and \
                info.get("url", "").removeprefix("file://") == str(code_dir.resolve()):
            return True
    return False


def _uv(uv: str, args: list[str], timeout: float) -> str:
    try:
        done = subprocess.run([uv, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise InstallError(f"{uv} not found; the bootstrap role installs uv into /venv/main first") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"uv {' '.join(args[:2])} took longer than {timeout:.0f}s") from None
    if done.returncode != 0:
        raise InstallError(f"uv {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr.strip()[-3000:]}")
    return done.stderr + done.stdout
