"""Reading a request and deciding who may make it: account key vs an instance's scoped key."""

from __future__ import annotations

import json
from typing import Any

from .errors import ApiError, invalid_args
from .http_types import Request


def forbidden(msg: str) -> ApiError:
    return ApiError(403, "permission_denied", msg)


def require_account(req: Request) -> None:
    """Endpoints an instance's scoped key (CONTAINER_API_KEY) may not use."""
    if req.caller.kind != "account":
        raise forbidden("This API key is scoped to one instance and cannot use this endpoint")


def require_scope(req: Request, instance_id: int) -> None:
    if req.caller.kind == "instance" and req.caller.instance_id != instance_id:
        raise forbidden(f"This API key is scoped to instance {req.caller.instance_id}, not {instance_id}")


def json_param(req: Request, name: str, default: Any) -> Any:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise invalid_args(f"{name} must be URL-encoded JSON, got {raw[:80]!r}") from exc


def body_object(req: Request) -> dict[str, Any]:
    if req.body is None:
        return {}
    if not isinstance(req.body, dict):
        raise invalid_args("The request body must be a JSON object")
    return req.body
