"""Log snapshots behind unauthenticated "presigned" result URLs, as the logs endpoint hands out."""

from __future__ import annotations

import secrets as pysecrets
import threading
import time
from typing import Any

from .http_types import Response


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
