"""Docker images against the host's driver: which CUDA an image needs and whether the host can start it.

On Vast (vast-api.md §7): ``vastai/pytorch`` is published as ``cuda-X.Y.Z-auto`` (and dated) tags for CUDA
12.6-13.2, no ``:latest``; the special tag ``@vastai-automatic-tag`` makes the backend pick the newest tag the
host's driver supports (``cuda_max_good`` of the offer). An image built for a newer CUDA than the driver
supports never starts: the container stays ``created`` and ``status_msg`` carries nvidia-container-cli's
"OCI runtime create failed ... unsatisfied condition: cuda>=X.Y" (what dstack watches for).

An image without a recognisable CUDA version in its tag (``ubuntu:22.04``, an untagged ``vastai/pytorch``)
starts anywhere here; whether such a tag exists on Docker Hub is not the emulator's to know.
"""

from __future__ import annotations

import re

AUTO_TAG = "@vastai-automatic-tag"
# The CUDA versions of the automatic tags, oldest first (the base-image CI's matrix, read 2026-12).
AUTO_TAG_CUDA = ("12.6.3", "12.8.1", "12.9.1", "13.0.2", "13.1.1", "13.2.0")
_CUDA_IN_TAG = re.compile(r"cuda[-_]?(\d+)\.(\d+)", re.IGNORECASE)


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def split_tag(image: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag); a registry port (``host:5000/repo``) is not a tag."""
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return image, None
    repo, tag = image.rsplit(":", 1)
    return repo, tag


def required_cuda(image: str) -> tuple[int, int] | None:
    """The CUDA (major, minor) an image's tag names, if it names one."""
    _, tag = split_tag(image)
    found = _CUDA_IN_TAG.search(tag or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def oci_error(need: tuple[int, int]) -> str:
    wanted = f"{need[0]}.{need[1]}"
    return (
        "Error response from daemon: failed to create task for container: failed to create shim task: "
        "OCI runtime create failed: runc create failed: unable to start container process: error during "
        "container init: error running prestart hook #0: exit status 1, stdout: , stderr: Auto-detected mode "
        f"as 'legacy' nvidia-container-cli: requirement error: unsatisfied condition: cuda>={wanted}, please "
        "update your driver to a newer version, or use an earlier cuda container: unknown"
    )


def resolve(image: str, cuda_max_good: float | None) -> tuple[str, str | None]:
    """(the image the host pulls, the start error or None) for an image on a host with ``cuda_max_good``."""
    host = _version(f"{float(cuda_max_good):.1f}") if cuda_max_good is not None else None
    repo, tag = split_tag(image)
    if tag == AUTO_TAG:
        usable = [v for v in AUTO_TAG_CUDA if host is None or _version(v) <= host]
        if not usable:  # a driver older than every published tag: the oldest one cannot start either
            return f"{repo}:cuda-{AUTO_TAG_CUDA[0]}-auto", oci_error(_version(AUTO_TAG_CUDA[0]))
        return f"{repo}:cuda-{usable[-1]}-auto", None
    need = required_cuda(image)
    if need is not None and host is not None and need > host:
        return image, oci_error(need)
    return image, None
