"""The HTTP front: auth, fault injection, routing, JSON encoding, request log (stdlib ThreadingHTTPServer)."""

from __future__ import annotations

import hmac
import json
import re
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .admin import RequestLog
from .errors import ApiError, invalid_user_key
from .faults import DEFAULT_429_BODY, FaultBook
from .http_types import Caller, Request, Response
from .ratelimit import RateLimiter
from .routes import Route, match
from .store import StateStore

# Anything before these (e.g. "/prefix" in --url http://host:port/prefix) is a client-side path prefix.
KNOWN_ROOTS = re.compile(r"/(api/v\d+|presigned|_emulator)(/|$)")


class Frontend:
    """Turns one raw HTTP request into a Response; shared by all handler threads."""

    def __init__(self, routes: list[Route], account_key: str, store: StateStore, faults: FaultBook, log: RequestLog,
                 limiter: RateLimiter | None = None):
        self.routes = routes
        self.account_key = account_key
        self.store = store
        self.faults = faults
        self.log = log
        self.limiter = limiter or RateLimiter(0)

    def caller_for(self, key: str | None) -> Caller | None:
        """None means a key was given but is not valid."""
        if not key:
            return Caller("none")
        if hmac.compare_digest(key.encode(), self.account_key.encode()):
            return Caller("account", key=key)
        with self.store.lock:
            for team_key in self.store.data.team_keys:
                if hmac.compare_digest(key.encode(), team_key.encode()):
                    return Caller("account", team=True, key=key)
            for rec in self.store.data.instances.values():
                if hmac.compare_digest(key.encode(), rec.api_key.encode()):
                    return Caller("instance", rec.id, key=key)
        return None

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[Response, dict[str, Any]]:
        started = time.monotonic()
        split = urlsplit(raw_path)
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        query = dict(query_pairs)
        root = KNOWN_ROOTS.search(split.path)
        prefix = split.path[: root.start()] if root else ""
        path = split.path[len(prefix) :]
        host = headers.get("Host") or "127.0.0.1"
        entry: dict[str, Any] = {
            "time": round(time.time(), 3),
            "method": method,
            "path": path + ("?" + urlencode([(k, v) for k, v in query_pairs if k != "api_key"]) if query_pairs else ""),
            "caller": "none",
            "fault": None,
        }
        try:
            response = self._dispatch(method, path, query, headers, body, f"http://{host}{prefix}", entry)
        except ApiError as exc:
            response = Response(exc.status, exc.body())
        except Exception:  # a bug in the emulator must still answer, and say so
            traceback.print_exc(file=sys.stderr)
            response = Response(500, {"success": False, "error": "server_error", "msg": "Emulator internal error"})
        entry["status"] = response.status
        entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        self.log.add(entry)
        return response, entry

    def _dispatch(self, method, path, query, headers, body, base_url, entry) -> Response:
        auth = headers.get("Authorization") or ""
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("api_key")
        caller = self.caller_for(key)
        entry["caller"] = "invalid" if caller is None else caller.kind
        if caller is not None and caller.kind == "instance":
            entry["caller"] = f"instance:{caller.instance_id}"
        if path.startswith("/api/"):
            # Faults may target one kind of caller (e.g. the instance key a self-destroy uses), so after the key.
            fault = self.faults.take_http(method, path, entry["caller"])
            if fault is not None:
                entry["fault"] = f"http_error {fault.status}"
                return _fault_response(fault.status, fault.retry_after, fault.body)
        route, params, path_known = match(self.routes, method, path)
        if route is None:
            if path_known:
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}")
            raise ApiError(404, "not_found", f"No such endpoint: {method} {path}")
        if route.auth != "none":
            if caller is None or caller.kind == "none":
                raise invalid_user_key()
            if route.auth == "account" and (caller.kind != "account" or caller.team):
                raise ApiError(403, "permission_denied", "Emulator admin endpoints need the account API key")
            # Vast's per-endpoint, per-identity minimum intervals (ratelimit.py): plain text, no Retry-After.
            refused = self.limiter.check(caller.key, method, path)
            if refused is not None:
                entry["fault"] = "rate_limit"
                return Response(429, refused, "text/plain")
        parsed_body: Any = None
        if body:
            try:
                parsed_body = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "invalid_args", "The request body is not valid JSON") from exc
        request = Request(method, path, query, parsed_body, caller or Caller("none"), base_url, params)
        return route.handler(request)


def _fault_response(status: int, retry_after: float | None, body: str | None) -> Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if body is not None:
        return Response(status, body, "text/plain", headers)
    if status == 429:
        return Response(status, DEFAULT_429_BODY, "text/plain", headers)
    if status in (502, 503, 504):
        html = f"<html><body><h1>{status} Service unavailable</h1></body></html>"
        return Response(status, html, "text/html", headers)
    return Response(status, {"success": False, "error": "server_error", "msg": "Internal server error"}, headers=headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end after this

    def version_string(self) -> str:
        return "vast_emulator"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        frontend: Frontend = self.server.frontend  # type: ignore[attr-defined]
        response, _ = frontend.handle(self.command, self.path, self.headers, body)
        if isinstance(response.body, (dict, list)) or response.body is None:
            payload = json.dumps(response.body).encode()
        else:
            payload = str(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # the request log (GET /_emulator/requests) replaces access logs


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], frontend: Frontend) -> None:
        super().__init__(address, Handler)
        self.frontend = frontend
