"""The error shape every Vast.ai endpoint answers with: ``{"success": false, "error": ..., "msg": ...}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error reply; ``extra`` keys are merged into the JSON body (e.g. ``ask_id``)."""

    def __init__(self, status: int, error: str, msg: str, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {msg}")
        self.status = status
        self.error = error
        self.msg = msg
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.error, "msg": self.msg, **self.extra}


def invalid_user_key() -> ApiError:
    return ApiError(401, "auth_error", "Invalid user key")


def no_such_instance(instance_id: int) -> ApiError:
    return ApiError(404, "no_such_instance", f"Instance {instance_id} not found.")


def invalid_args(msg: str, status: int = 400, **extra: Any) -> ApiError:
    return ApiError(status, "invalid_args", msg, **extra)
