"""Handlers for the offer and instance endpoints of vast-api.md §1 (account ones: api_account.py)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from . import offers as offer_search
from . import querying
from .access import body_object, json_param, require_account, require_scope
from .api_account import public_key
from .errors import ApiError, invalid_args, no_such_instance
from .http_types import Request, Response, ok
from .instances import InstanceManager
from .offers import Catalogue
from .presigned import PresignedLogs
from .store import StateStore

V1_PAGE_MAX = 25
V1_PAGE_NONPOSITIVE = 5


class InstanceApi:
    def __init__(self, store: StateStore, catalogue: Catalogue, manager: InstanceManager) -> None:
        self.store = store
        self.catalogue = catalogue
        self.manager = manager
        self.logs = PresignedLogs()

    # ----- offers --------------------------------------------------------------------------------------------
    def search_bundles(self, req: Request) -> Response:
        require_account(req)
        body = body_object(req) if req.method != "GET" else json_param(req, "q", {})
        return ok({"offers": offer_search.search(self.catalogue, body, self.manager.offers_in_use())})

    def search_asks(self, req: Request) -> Response:
        require_account(req)
        body = body_object(req)
        query = body.get("q", {k: v for k, v in body.items() if k != "select_cols"})
        return ok({"offers": offer_search.search(self.catalogue, query, self.manager.offers_in_use())})

    def gpu_names(self, req: Request) -> Response:
        return ok({"gpu_names": self.catalogue.gpu_names()})

    def create_instance(self, req: Request) -> Response:
        require_account(req)
        offer_id = int(req.params["id"])
        created = self.manager.create(offer_id, body_object(req))
        if created.answer_after_s:
            time.sleep(created.answer_after_s)  # a slow create: the client may time out first
        error = created.error
        if error is not None and error.status >= 500:  # the gateway's answer, not the API's
            return Response(error.status, error.msg, "text/html")
        if error is not None:  # created anyway: the error carries new_contract
            return Response(error.status, error.body())
        return ok({"success": True, "new_contract": created.instance_id, "instance_api_key": created.api_key})

    # ----- instances: reading --------------------------------------------------------------------------------
    def _visible_rows(self, req: Request) -> list[dict[str, Any]]:
        rows = self.manager.rows()
        if req.caller.kind == "instance":
            rows = [r for r in rows if r["id"] == req.caller.instance_id]
        return rows

    def list_v1(self, req: Request) -> Response:
        filters = json_param(req, "select_filters", {})
        if not isinstance(filters, dict):
            raise invalid_args("select_filters must be a JSON object of {column: {op: value}}")
        order = querying.parse_order(json_param(req, "order_by", [{"col": "id", "dir": "asc"}]))
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
        cols = json_param(req, "select_cols", ["*"])
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
        try:
            self.manager.destroy(instance_id)
        except ApiError as exc:
            if exc.error != "no_such_instance":
                raise
            # Documented as 404 not_found; what clients meet (dstack treats it as done) is a 200 that failed.
            return ok({"success": False, "error": "no_such_instance", "msg": f"Instance {instance_id} not found."})
        return ok({"success": True, "msg": f"Instance {instance_id} destroyed."})

    def destroy_many(self, req: Request) -> Response:
        require_account(req)
        ids = body_object(req).get("instance_ids")
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
        body = body_object(req)
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
        body = body_object(req)
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
        body = body_object(req)
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
        key = public_key(body_object(req).get("ssh_key"))
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
