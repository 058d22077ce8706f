"""Where the API is, who we are, and how we pace: `VAST_URL`, the API key (found as the vastai CLI finds it).

The key, first found wins (as `vastai` 1.9.1 reads it, vast-api.md §0): an explicit argument, `$VAST_API_KEY`,
the file `vastai set api-key KEY` writes (`$XDG_CONFIG_HOME/vastai/vast_api_key`, default
`~/.config/vastai/vast_api_key`), then the legacy `~/.vast_api_key`.

Pacing (vastkit.pacing): `$VASTKIT_PACING_SCALE` multiplies Vast's per-endpoint intervals (default 1; 0 turns
pacing off, only sensible against an emulator without limits); `$VASTKIT_PACING_DIR` is where the processes of
one controller share the pacing state (default `$XDG_CACHE_HOME/vastkit/pacing`, i.e. `~/.cache/vastkit/pacing`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vastkit.errors import VastConfigError

DEFAULT_URL = "https://console.vast.ai"
KEY_ENV = "VAST_API_KEY"
PACING_SCALE_ENV = "VASTKIT_PACING_SCALE"
PACING_DIR_ENV = "VASTKIT_PACING_DIR"


def key_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files the vastai CLI reads the key from, in its order: the one `vastai set api-key` writes, the legacy one."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or Path.home())
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [config / "vastai" / "vast_api_key", home / ".vast_api_key"]


def find_api_key(environ: Mapping[str, str] | None = None, key_var: str = KEY_ENV) -> tuple[str, str]:
    """(key, where it came from), or ("", "") when there is none. `where` names a variable or a file, never the key."""
    environ = os.environ if environ is None else environ
    if (environ.get(key_var) or "").strip():
        return environ[key_var].strip(), f"${key_var}"
    if key_var != KEY_ENV:
        return "", ""
    for path in key_files(environ):
        try:
            key = path.read_text().strip()
        except OSError:
            continue
        if key:
            return key, str(path)
    return "", ""


def missing_key_message(environ: Mapping[str, str] | None = None) -> str:
    files = key_files(environ)
    return (f"No Vast.ai API key: set {KEY_ENV} in the environment, or save it once with `vastai set api-key KEY` "
            f"(read from {files[0]}, then the legacy {files[1]}); get one at https://cloud.vast.ai/manage-keys/")


def _cache_home(environ: Mapping[str, str]) -> Path:
    home = Path(environ.get("HOME") or Path.home())
    return Path(environ.get("XDG_CACHE_HOME") or home / ".cache")


@dataclass(frozen=True)
class ApiSettings:
    """Base URL, API key and pacing. The key is excluded from repr so it never lands in a log by accident."""

    url: str = DEFAULT_URL
    api_key: str = field(default="", repr=False)
    pacing_scale: float = 1.0
    pacing_dir: Path | None = None  # None: no state shared between processes (pacing within this process only)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise VastConfigError(f"Vast API URL {self.url!r} is not an http(s) URL; set VAST_URL to e.g. {DEFAULT_URL}")
        if not self.api_key:
            raise VastConfigError(missing_key_message())
        if not self.pacing_scale >= 0:
            raise VastConfigError(f"{PACING_SCALE_ENV}={self.pacing_scale!r}: expected a number >= 0 (1: Vast's own "
                                  "rate limits; 0: no pacing)")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def is_public_console(self) -> bool:
        return self.url == DEFAULT_URL

    @property
    def identity(self) -> str:
        """Who the rate limits count us as (API and key), as a name safe for a file: a hash, never the key."""
        return hashlib.sha256(f"{self.url}\0{self.api_key}".encode()).hexdigest()[:24]

    @classmethod
    def from_env(cls, *, api_key: str | None = None, url: str | None = None, key_var: str = KEY_ENV,
                 environ: Mapping[str, str] | None = None):
        """Explicit arguments win, then the environment (`key_var`, `VAST_URL`), the key files, the public console."""
        environ = os.environ if environ is None else environ
        key = api_key or find_api_key(environ, key_var)[0]
        if not key and key_var != KEY_ENV:
            raise VastConfigError(f"No Vast.ai API key: ${key_var} is not set (Vast sets it in the container's "
                                  "environment, which SSH sessions do not see)")
        if not key:
            raise VastConfigError(missing_key_message(environ))
        raw_scale = (environ.get(PACING_SCALE_ENV) or "1").strip()
        try:
            scale = float(raw_scale)
        except ValueError:
            raise VastConfigError(f"{PACING_SCALE_ENV}={raw_scale!r}: expected a number >= 0 (1: Vast's own rate "
                                  "limits; 0: no pacing)") from None
        pacing_dir = Path(environ.get(PACING_DIR_ENV) or _cache_home(environ) / "vastkit" / "pacing")
        return cls(url=url or environ.get("VAST_URL") or DEFAULT_URL, api_key=key, pacing_scale=scale,
                   pacing_dir=pacing_dir)

    @classmethod
    def for_instance(cls):
        """Inside a Vast instance: the instance-scoped `CONTAINER_API_KEY`, which can only act on this instance."""
        return cls.from_env(key_var="CONTAINER_API_KEY")
