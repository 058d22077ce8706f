"""Emulator-only endpoints under /_emulator/ (account key required): faults, request log, state."""

from __future__ import annotations

import secrets as pysecrets
import time
from collections import deque
from threading import Lock
from typing import Any

from .errors import invalid_args
from .faults import Fault, FaultBook, FaultSpecError, parse_faults
from .http_types import LiveSettings, Request, Response, ok
from .instances import InstanceManager
from .ratelimit import RateLimiter
from .store import StateStore

REQUEST_LOG_SIZE = 200_000  # callers index it by position; a long session must not roll it over


class RequestLog:
    """What reached the emulator: method, path (query without api_key), status, caller kind, time. Never keys."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append({"seq": self._seq, **entry})

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if e["seq"] > seq]


class AdminApi:
    def __init__(
        self,
        store: StateStore,
        manager: InstanceManager,
        faults: FaultBook,
        request_log: RequestLog,
        base_ready_fn,
        settings: LiveSettings | None = None,
        limiter: RateLimiter | None = None,
        clear_secrets=dict,
    ) -> None:
        self.store = store
        self.manager = manager
        self.faults = faults
        self.request_log = request_log
        self.base_ready_fn = base_ready_fn
        self.settings = settings or LiveSettings()
        self.limiter = limiter or RateLimiter(self.settings.rate_limit_scale)
        self.clear_secrets = clear_secrets

    def get_settings(self, req: Request) -> Response:
        return ok({"success": True, "settings": {"rate_limit_scale": self.settings.rate_limit_scale,
                                                 "strict_env_values": self.settings.strict_env_values}})

    def put_settings(self, req: Request) -> Response:
        """``{"rate_limit_scale": 1.0, "strict_env_values": true}`` (either); a new scale forgets past requests."""
        body = req.body if isinstance(req.body, dict) else {}
        unknown = set(body) - {"rate_limit_scale", "strict_env_values"}
        if unknown or not body:
            raise invalid_args(f"settings: give rate_limit_scale (a number >= 0) and/or strict_env_values (a bool); "
                               f"unknown: {', '.join(sorted(unknown)) or 'nothing given'}")
        if "rate_limit_scale" in body:
            scale = body["rate_limit_scale"]
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
                raise invalid_args(f"rate_limit_scale must be a number >= 0 (0 turns the limits off), got {scale!r}")
            self.settings.rate_limit_scale = float(scale)
            self.limiter.set_scale(float(scale))
        if "strict_env_values" in body:
            if not isinstance(body["strict_env_values"], bool):
                raise invalid_args(f"strict_env_values must be true or false, got {body['strict_env_values']!r}")
            self.settings.strict_env_values = body["strict_env_values"]
        return self.get_settings(req)

    def secrets(self, req: Request) -> Response:
        """The account env-vars in clear (the API itself only shows masked values)."""
        return ok({"success": True, "secrets": self.clear_secrets()})

    def add_api_key(self, req: Request) -> Response:
        """``{"team": true}``: another key of this account, flagged as a team key (cannot register SSH keys)."""
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("team") is not True or set(body) != {"team"}:
            raise invalid_args('give {"team": true}: the emulator mints team keys only (the account key is its own)')
        key = pysecrets.token_hex(32)
        with self.store.lock:
            self.store.data.team_keys.append(key)
            self.store.save()
        return ok({"success": True, "api_key": key, "team": True})

    def add_faults(self, req: Request) -> Response:
        try:
            parsed = parse_faults(req.body)
        except FaultSpecError as exc:
            raise invalid_args(str(exc)) from exc
        hit: list[int] = []
        for fault in parsed:
            hit += self.install(fault)
        return ok({"success": True, "accepted": len(parsed), "hit_instances": hit})

    def install(self, fault: Fault) -> list[int]:
        """Put one parsed fault where it takes effect; returns the existing instances it hit."""
        if fault.kind == "http_error":
            self.faults.add_http(fault)
        elif fault.kind == "offer_gone" and "offer_ids" in fault.params:
            until = time.time() + float(fault.params["gone_for_s"])
            with self.store.lock:
                for offer_id in fault.params["offer_ids"]:
                    self.store.data.gone_offers[offer_id] = until
                self.store.save()
        elif fault.target == "next_create":
            self.faults.queue_for_create(fault)
        else:
            return self.manager.apply_fault(fault)
        return []

    def reset_faults(self, req: Request) -> Response:
        self.faults.clear()
        self.manager.clear_instance_faults()
        return ok({"success": True})

    def requests(self, req: Request) -> Response:
        try:
            since = int(req.query.get("since", 0))
        except ValueError as exc:
            raise invalid_args("since must be an integer sequence number") from exc
        return ok({"requests": self.request_log.since(since)})

    def state(self, req: Request) -> Response:
        with self.store.lock:
            now = time.time()
            gone = sorted(o for o, until in self.store.data.gone_offers.items() if until > now)
            account = {
                "ssh_key_ids": [k["id"] for k in self.store.data.ssh_keys],
                "env_var_names": sorted(self.store.data.secrets),
            }
        return ok(
            {
                "instances": self.manager.debug_view(),
                "offers_in_use": sorted(self.manager.offers_in_use()),
                "offers_gone": gone,
                "faults": self.faults.snapshot(),
                "account": account,
                "base_venv_ready": self.base_ready_fn(),
                "settings": {"rate_limit_scale": self.settings.rate_limit_scale,
                             "strict_env_values": self.settings.strict_env_values},
            }
        )
