"""The one error type every vastkit caller handles."""

from __future__ import annotations

import json

import requests


class VastAPIError(Exception):
    """A failed Vast.ai API call: HTTP status, the API's ``error`` code and its ``msg``.

    The message names the method and path (never the query string, which may carry a legacy ``api_key``)
    so that it is safe to print, log and return from an Ansible module.
    """

    def __init__(self, status: int | None, error: str | None, msg: str, *, method: str = "", path: str = "",
                 retry_after: float | None = None):
        self.status = status
        self.retry_after = retry_after
        self.error = error
        self.msg = msg
        self.method = method
        self.path = path
        where = f"{method} {path} " if method else ""
        code = f" {error}" if error else ""
        if status is None:  # no HTTP answer at all (refused, DNS, timeout, TLS): say where to look
            super().__init__(f"Vast API {where}unreachable ({error or 'no answer'}): {msg}; check VAST_URL and the "
                             "network")
        else:
            super().__init__(f"Vast API {where}failed (HTTP {status}{code}): {msg}")

    @property
    def retryable(self) -> bool:
        return self.status in {429, 502, 503, 504}

    @property
    def is_not_found(self) -> bool:
        return self.status in (404, 410) or self.error in {"no_such_instance", "not_found"}

    @property
    def is_offer_gone(self) -> bool:
        """The offer was taken between search and create (`no_such_ask`, 404/410)."""
        return self.status in (404, 410) and "no_such_ask" in f"{self.error} {self.msg}"

    def as_dict(self) -> dict:
        return {"status": self.status, "error": self.error, "msg": self.msg, "method": self.method, "path": self.path}

    @classmethod
    def from_response(cls, response: requests.Response) -> VastAPIError:
        request = response.request
        method = getattr(request, "method", "") or ""
        path = (getattr(request, "path_url", "") or "").split("?", 1)[0]
        error, msg = None, None
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            body = None
        if isinstance(body, dict):
            error = body.get("error") if isinstance(body.get("error"), str) else None
            msg = body.get("msg") or body.get("detail") or body.get("message")
        if not msg:
            text = (response.text or "").strip()
            msg = text[:300] if text and not text.lstrip().startswith("<") else response.reason or "no detail"
        try:
            retry_after = max(0.0, float(response.headers["Retry-After"]))
        except (KeyError, TypeError, ValueError):
            retry_after = None
        return cls(response.status_code, error, str(msg), method=method, path=path, retry_after=retry_after)


class VastConfigError(ValueError):
    """The client cannot be built: a missing API key or a malformed URL. Says what to set."""
