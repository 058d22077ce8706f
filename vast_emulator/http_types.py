"""The request/response values passed between the HTTP server and the endpoint handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the account key, an instance's scoped key (CONTAINER_API_KEY), or nobody."""

    kind: str  # "account" | "instance" | "none"
    instance_id: int | None = None
    team: bool = False  # an account key flagged as a team key (cannot register SSH keys)
    key: str = field(default="", repr=False)  # the key as sent: the rate limits' identity


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without any prefix before /api/ and without the query string
    query: dict[str, str]
    body: Any
    caller: Caller
    base_url: str  # scheme://host:port[/prefix] as the client reached us
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str -> text
    content_type: str = "application/json"  # exactly this: the vastai CLI rejects "; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LiveSettings:
    """Emulator behaviour that tests may change while it runs (``POST /_emulator/settings``)."""

    rate_limit_scale: float = 1.0
    strict_env_values: bool = False  # enforce the documented env-var value pattern ^[a-zA-Z0-9_\-\.]+$


def ok(body: Any, status: int = 200) -> Response:
    return Response(status=status, body=body)
