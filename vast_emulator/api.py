"""Handlers for the Vast.ai endpoints (vast-api.md §1): offers, instances, account env-vars, ssh keys, user."""

from __future__ import annotations

import base64
import json
import re
import secrets as pysecrets
import threading
import time
from typing import Any

from . import offers as offer_search
from . import querying
from .errors import ApiError, invalid_args, no_such_instance
from .http_types import Request, Response, ok
from .instances import InstanceManager
from .offers import Catalogue
from .store import StateStore

V1_PAGE_MAX = 25
V1_PAGE_NONPOSITIVE = 5
MAX_SECRETS = 100
MAX_SECRET_VALUE = 4096
SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$")
USER_ID = 1001


def _forbidden(msg: str) -> ApiError:
    return ApiError(403, "permission_denied", msg)


def require_account(req: Request) -> None:
    """Endpoints an instance's scoped key (CONTAINER_API_KEY) may not use."""
    if req.caller.kind != "account":
        raise _forbidden("This API key is scoped to one instance and cannot use this endpoint")


def require_scope(req: Request, instance_id: int) -> None:
    if req.caller.kind == "instance" and req.caller.instance_id != instance_id:
        raise _forbidden(f"This API key is scoped to instance {req.caller.instance_id}, not {instance_id}")


def _json_param(req: Request, name: str, default: Any) -> Any:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise invalid_args(f"{name} must be URL-encoded JSON, got {raw[:80]!r}") from exc


def _body(req: Request) -> dict[str, Any]:
    if req.body is None:
        return {}
    if not isinstance(req.body, dict):
        raise invalid_args("The request body must be a JSON object")
    return req.body


class PresignedLogs:
    """Log snapshots behind unauthenticated result URLs; each answers 404 once (not ready) then 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}

    def put(self, name: str, text: str) -> str:
        token = f"{name}-{pysecrets.token_hex(8)}.txt"
        with self._lock:
            self._items[token] = {"text": text, "polled": 0, "created": time.time()}
            cutoff = time.time() - 3600
            self._items = {k: v for k, v in self._items.items() if v["created"] > cutoff}
        return token

    def get(self, token: str) -> Response:
        with self._lock:
            item = self._items.get(token)
            if item is None:
                return Response(404, "<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            item["polled"] += 1
            if item["polled"] == 1:
                return Response(404, "<Error><Code>NoSuchKey</Code><Message>not ready</Message></Error>", "application/xml")
            return Response(200, item["text"], "text/plain")


class VastApi:
    def __init__(self, store: StateStore, catalogue: Catalogue, manager: InstanceManager, account_key: str) -> None:
        self.store = store
        self.catalogue = catalogue
        self.manager = manager
        self.account_key = account_key
        self.logs = PresignedLogs()

    # ----- offers --------------------------------------------------------------------------------------------
    def search_bundles(self, req: Request) -> Response:
        require_account(req)
        body = _body(req) if req.method != "GET" else _json_param(req, "q", {})
        return ok({"offers": offer_search.search(self.catalogue, body, self.manager.offers_in_use())})

    def search_asks(self, req: Request) -> Response:
        require_account(req)
        body = _body(req)
        query = body.get("q", {k: v for k, v in body.items() if k != "select_cols"})
        return ok({"offers": offer_search.search(self.catalogue, query, self.manager.offers_in_use())})

    def gpu_names(self, req: Request) -> Response:
        return ok({"gpu_names": self.catalogue.gpu_names()})

    def create_instance(self, req: Request) -> Response:
        require_account(req)
        offer_id = int(req.params["id"])
        instance_id, key = self.manager.create(offer_id, _body(req))
        return ok({"success": True, "new_contract": instance_id, "instance_api_key": key})

    # ----- instances: reading --------------------------------------------------------------------------------
    def _visible_rows(self, req: Request) -> list[dict[str, Any]]:
        rows = self.manager.rows()
        if req.caller.kind == "instance":
            rows = [r for r in rows if r["id"] == req.caller.instance_id]
        return rows

    def list_v1(self, req: Request) -> Response:
        filters = _json_param(req, "select_filters", {})
        if not isinstance(filters, dict):
            raise invalid_args("select_filters must be a JSON object of {column: {op: value}}")
        order = querying.parse_order(_json_param(req, "order_by", [{"col": "id", "dir": "asc"}]))
        if not any(col == "id" for col, _ in order):
            order.append(("id", False))  # Vast always appends id as the tie-breaker
        try:
            limit = int(req.query.get("limit", V1_PAGE_MAX))
        except ValueError as exc:
            raise invalid_args("limit must be an integer") from exc
        limit = V1_PAGE_NONPOSITIVE if limit <= 0 else min(limit, V1_PAGE_MAX)
        offset = _decode_token(req.query.get("after_token"))
        all_rows = self._visible_rows(req)
        rows = querying.sort_rows([r for r in all_rows if querying.matches(r, filters)], order)
        page = rows[offset : offset + limit]
        cols = _json_param(req, "select_cols", ["*"])
        if isinstance(cols, list) and cols and cols != ["*"]:
            page = [{c: r.get(c) for c in cols} for r in page]
        counts: dict[str, int] = {"": 0}
        for r in all_rows:
            counts[r["label"] or ""] = counts.get(r["label"] or "", 0) + 1
        more = offset + limit < len(rows)
        return ok(
            {
                "success": True,
                "instances": page,
                "instances_found": len(page),
                "total_instances": len(rows),
                "label_counts": counts,
                "next_token": _encode_token(offset + limit) if more else None,
            }
        )

    def list_v0(self, req: Request) -> Response:
        return ok({"instances": self._visible_rows(req)})

    def instance_filters(self, req: Request) -> Response:
        seen: list[dict[str, Any]] = []
        for r in self._visible_rows(req):
            entry = {"actual_status": r["actual_status"], "verification": r["verification"], "gpu_name": r["gpu_name"]}
            if entry not in seen:
                seen.append(entry)
        return ok({"filters": seen})

    def show_instance(self, req: Request) -> Response:
        instance_id = int(req.params["id"])
        require_scope(req, instance_id)
        return ok({"instances": self.manager.row(instance_id)})

    # ----- instances: changing -------------------------------------------------------------------------------
    def destroy_instance(self, req: Request) -> Response:
        instance_id = int(req.params["id"])
        require_scope(req, instance_id)
        self.manager.destroy(instance_id)
        return ok({"success": True, "msg": f"Instance {instance_id} destroyed."})

    def destroy_many(self, req: Request) -> Response:
        require_account(req)
        ids = _body(req).get("instance_ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise invalid_args("instance_ids must be a list of instance ids")
        done = []
        for instance_id in ids:
            try:
                self.manager.destroy(instance_id)
                done.append(instance_id)
            except ApiError:
                pass
        return ok({"success": True, "destroyed_instances": done})

    def manage_instance(self, req: Request) -> Response:
        instance_id = int(req.params["id"])
        require_scope(req, instance_id)
        body = _body(req)
        if not {"state", "label"} & set(body):
            raise invalid_args('Give "state" ("running" or "stopped") or "label"')
        with self.store.lock:
            if instance_id not in self.store.data.instances:
                raise no_such_instance(instance_id)
        msg = ""
        if "label" in body:
            self.manager.set_label(instance_id, body["label"])
            msg = f"Instance {instance_id} label set."
        if "state" in body:
            state = body["state"]
            if state == "stopped":
                self.manager.stop(instance_id)
            elif state == "running":
                self.manager.start(instance_id)
            else:
                raise invalid_args(f'state must be "running" or "stopped", got {state!r}')
            msg = f"Instance {instance_id} {state}."
        return ok({"success": True, "msg": msg})

    def manage_many(self, req: Request) -> Response:
        require_account(req)
        body = _body(req)
        ids, state = body.get("ids"), body.get("state")
        if not isinstance(ids, list) or state not in ("running", "stopped"):
            raise invalid_args('Give "ids" (a list) and "state" ("running" or "stopped")')
        for instance_id in ids:
            (self.manager.stop if state == "stopped" else self.manager.start)(int(instance_id))
        return ok({"success": True})

    def reboot_instance(self, req: Request) -> Response:
        instance_id = int(req.params["id"])
        require_scope(req, instance_id)
        self.manager.reboot(instance_id)
        return ok({"success": True})

    def request_logs(self, req: Request) -> Response:
        instance_id = int(req.params["id"])
        require_scope(req, instance_id)
        body = _body(req)
        text = self.manager.log_text(
            instance_id, body.get("tail"), body.get("filter"), str(body.get("daemon_logs", "")).lower() == "true"
        )
        token = self.logs.put(f"logs-{instance_id}", text)
        return ok({"success": True, "result_url": f"{req.base_url}/presigned/{token}", "msg": "Logs requested."})

    def presigned(self, req: Request) -> Response:
        return self.logs.get(req.params["token"])

    # ----- ssh keys on an instance ---------------------------------------------------------------------------
    def attach_ssh(self, req: Request) -> Response:
        require_account(req)
        key = _public_key(_body(req).get("ssh_key"))
        entry = self.manager.attach_key(int(req.params["id"]), key)
        return ok({"success": True, "msg": "SSH key attached successfully", "key_id": entry["id"]})

    def list_instance_ssh(self, req: Request) -> Response:
        require_account(req)
        instance_id = int(req.params["id"])
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            if rec is None:
                raise no_such_instance(instance_id)
            return ok({"success": True, "ssh_keys": [dict(k) for k in rec.attached_keys]})

    def detach_ssh(self, req: Request) -> Response:
        require_account(req)
        self.manager.detach_key(int(req.params["id"]), int(req.params["key_id"]))
        return ok({"success": True, "msg": "SSH key removed from instance."})

    # ----- account: user, env-vars (secrets), ssh keys -------------------------------------------------------
    def current_user(self, req: Request) -> Response:
        with self.store.lock:
            first_key = self.store.data.ssh_keys[0]["key"] if self.store.data.ssh_keys else ""
        user = {
            "id": USER_ID,
            "key_id": 1,
            "username": "emulator",
            "email": "emulator@localhost",
            "fullname": "Vast Emulator",
            "balance": 0.0,
            "credit": 100.0,
            "can_pay": True,
            "has_billing": True,
            "email_verified": True,
            "ssh_key": first_key,
            "sid": "emulator-session",
            "host_agreement_accepted": False,
            "balance_threshold": 5.0,
            "balance_threshold_enabled": False,
        }
        if req.caller.kind == "account":
            user["api_key"] = self.account_key  # the real API returns it; the CLI drops it before printing
        return ok(user)

    def list_secrets(self, req: Request) -> Response:
        require_account(req)
        with self.store.lock:
            return ok({"success": True, "secrets": dict(self.store.data.secrets)})

    def _secret_input(self, req: Request, need_value: bool) -> tuple[str, str | None]:
        body = _body(req)
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str) or not key or (need_value and value is None):
            raise ApiError(400, "missing_input", "Both key and value are required" if need_value else "key is required")
        key = key.upper()
        if not SECRET_NAME.match(key):
            raise ApiError(400, "invalid_characters", f"Key {key!r} may contain only letters, digits and _")
        if need_value:
            value = str(value)
            if value == "":
                raise ApiError(400, "empty_input", "value must not be empty")
            if len(value) > MAX_SECRET_VALUE or len(key) > 256:
                raise ApiError(400, "input_too_long", f"value must be at most {MAX_SECRET_VALUE} characters")
            if "\n" in value or "\0" in value:
                raise ApiError(400, "invalid_characters", "value must be one line")
        return key, value

    def create_secret(self, req: Request) -> Response:
        require_account(req)
        key, value = self._secret_input(req, need_value=True)
        with self.store.lock:
            secrets = self.store.data.secrets
            if key in secrets:
                raise ApiError(400, "existing_key", f"Environment variable {key} already exists; update it instead")
            if len(secrets) >= MAX_SECRETS:
                raise ApiError(400, "max_secrets", f"At most {MAX_SECRETS} environment variables per account")
            secrets[key] = value
            self.store.save()
        return ok({"success": True, "msg": "Environment variable added successfully"})

    def update_secret(self, req: Request) -> Response:
        require_account(req)
        key, value = self._secret_input(req, need_value=True)
        with self.store.lock:
            if key not in self.store.data.secrets:
                raise ApiError(400, "nonexistent_key", f"Environment variable {key} does not exist")
            self.store.data.secrets[key] = value
            self.store.save()
        return ok({"success": True, "msg": "Environment variable updated successfully"})

    def delete_secret(self, req: Request) -> Response:
        require_account(req)
        key, _ = self._secret_input(req, need_value=False)
        with self.store.lock:
            if key not in self.store.data.secrets:
                raise ApiError(400, "nonexistent_key", f"Environment variable {key} does not exist")
            del self.store.data.secrets[key]
            self.store.save()
        return ok({"success": True, "msg": "Environment variable deleted successfully"})

    def list_ssh_keys(self, req: Request) -> Response:
        require_account(req)
        with self.store.lock:
            return ok([dict(k) for k in self.store.data.ssh_keys])

    def create_ssh_key(self, req: Request) -> Response:
        require_account(req)
        key = _public_key(_body(req).get("ssh_key"))
        with self.store.lock:
            data = self.store.data
            entry = {
                "id": data.next_ssh_key_id,
                "user_id": USER_ID,
                "key": key,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "deleted_at": None,
            }
            data.next_ssh_key_id += 1
            data.ssh_keys.append(entry)
            self.store.save()
        public = {k: v for k, v in entry.items() if k != "key"} | {"public_key": key}
        return ok({"success": True, "key": public})

    def _ssh_key_entry(self, key_id: int) -> dict[str, Any]:
        for entry in self.store.data.ssh_keys:
            if entry["id"] == key_id:
                return entry
        raise ApiError(404, "no_such_key", f"SSH key {key_id} not found")

    def update_ssh_key(self, req: Request) -> Response:
        require_account(req)
        key = _public_key(_body(req).get("ssh_key"))
        with self.store.lock:
            self._ssh_key_entry(int(req.params["id"]))["key"] = key
            self.store.save()
        return ok({"success": True})

    def delete_ssh_key(self, req: Request) -> Response:
        require_account(req)
        with self.store.lock:
            entry = self._ssh_key_entry(int(req.params["id"]))
            self.store.data.ssh_keys.remove(entry)
            self.store.save()
        return ok({"success": True, "msg": "SSH key deleted"})


def _public_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "no_ssh_key", "ssh_key is required: an OpenSSH public key such as 'ssh-ed25519 AAAA... me@host'")
    value = value.strip()
    if "PRIVATE KEY" in value or not PUBLIC_KEY.match(value):
        raise ApiError(400, "invalid_ssh_key", "ssh_key must be one OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    return value


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_args("Invalid after_token: pass back the next_token of the previous page") from exc
    if offset < 0:
        raise invalid_args("Invalid after_token: pass back the next_token of the previous page")
    return offset
