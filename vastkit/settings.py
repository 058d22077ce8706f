"""Where the API is and who we are: `VAST_URL` and `VAST_API_KEY`, the variables the vastai CLI reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vastkit.errors import VastConfigError

DEFAULT_URL = "https://console.vast.ai"


@dataclass(frozen=True)
class ApiSettings:
    """Base URL and API key. The key is excluded from repr so it never lands in a log by accident."""

    url: str = DEFAULT_URL
    api_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise VastConfigError(f"Vast API URL {self.url!r} is not an http(s) URL; set VAST_URL to e.g. {DEFAULT_URL}")
        if not self.api_key:
            raise VastConfigError(
                "No Vast.ai API key: set VAST_API_KEY in the environment (or pass api_key); "
                "get one at https://cloud.vast.ai/manage-keys/"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def is_public_console(self) -> bool:
        return self.url == DEFAULT_URL

    @classmethod
    def from_env(cls, *, api_key: str | None = None, url: str | None = None, key_var: str = "VAST_API_KEY"):
        """Explicit arguments win, then the environment (`key_var`, `VAST_URL`), then the public console."""
        return cls(url=url or os.environ.get("VAST_URL") or DEFAULT_URL, api_key=api_key or os.environ.get(key_var, ""))

    @classmethod
    def for_instance(cls):
        """Inside a Vast instance: the instance-scoped `CONTAINER_API_KEY`, which can only act on this instance."""
        return cls.from_env(key_var="CONTAINER_API_KEY")
