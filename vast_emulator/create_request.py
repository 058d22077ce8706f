"""The create body (``PUT /api/v0/asks/{id}/``) checked against Vast's documented input limits."""

from __future__ import annotations

from typing import Any

from .environment import container_env_entries
from .errors import ApiError, invalid_args

MAX_LABEL = 256
MAX_IMAGE = 1024
MAX_ONSTART_ARGS = 4096
MAX_ENV_VALUE = 256
MAX_ENV_TOTAL = 32768
MIN_DISK_GB = 8.0
DEFAULT_IMAGE = "vastai/base-image:@vastai-automatic-tag"


def no_such_ask(offer_id: int, gone: bool) -> ApiError:
    if gone:
        return ApiError(410, "no_such_ask", f"error 410/3603: no_such_ask Instance type by id {offer_id} is no longer available.", ask_id=offer_id)
    return ApiError(404, "invalid_args", f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.", ask_id=offer_id)


def validated_create_body(body: dict[str, Any]) -> dict[str, Any]:
    """Check a create body against Vast's documented input limits; returns InstanceRecord fields."""

    def bad(msg: str) -> ApiError:
        return invalid_args(f"error 400/3467: Invalid args: {msg}")

    image = body.get("image") or DEFAULT_IMAGE
    if not isinstance(image, str) or len(image) > MAX_IMAGE:
        raise bad(f"image must be a string of at most {MAX_IMAGE} characters")
    disk_raw = body.get("disk", MIN_DISK_GB)
    try:
        disk = float(disk_raw if disk_raw is not None else MIN_DISK_GB)
    except (TypeError, ValueError) as exc:
        raise bad(f"disk must be a number of GB, got {disk_raw!r}") from exc
    if disk < MIN_DISK_GB:
        raise bad(f"disk must be at least {MIN_DISK_GB:g} GB, got {disk:g}")
    label = body.get("label")
    if label is not None and len(str(label)) > MAX_LABEL:
        raise bad(f"label must be at most {MAX_LABEL} characters, got {len(str(label))}")
    onstart = body.get("onstart")
    if onstart is not None and not isinstance(onstart, str):
        raise bad("onstart must be a string")
    args = body.get("args")
    if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise bad("args must be a list of strings")
    combined = len(onstart or "") + len(" ".join(args or [])) + len(str(body.get("args_str") or ""))
    if combined > MAX_ONSTART_ARGS:
        raise bad(f"onstart + args together must be at most {MAX_ONSTART_ARGS} characters, got {combined}")
    env = body.get("env") or {}
    if isinstance(env, str):
        env = {**container_env_entries(env)}
    if not isinstance(env, dict):
        raise bad("env must be an object of NAME: value")
    env = {str(k): "" if v is None else str(v) for k, v in env.items()}
    for key, value in env.items():
        if len(value) > MAX_ENV_VALUE:
            raise bad(f"env value of {key} must be at most {MAX_ENV_VALUE} characters, got {len(value)}")
        if "\n" in value or "\0" in value:
            raise bad(f"env value of {key} must be one line")
    if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENV_TOTAL:
        raise bad(f"env must be at most {MAX_ENV_TOTAL} characters in total")
    price = body.get("price")
    if price is not None:
        try:
            price = float(price)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "invalid_price", f"price must be a number, got {price!r}") from exc
        if not 0.001 <= price <= 128:
            raise ApiError(400, "invalid_price", f"price must be between 0.001 and 128 $/hour, got {price:g}")
    return {
        "image": image,
        "disk": disk,
        "label": None if label is None else str(label),
        "onstart": onstart,
        "env": env,
        "runtype": str(body.get("runtype") or "ssh"),
        "args": args,
        "price": price,
        "template_hash_id": body.get("template_hash_id"),
    }
