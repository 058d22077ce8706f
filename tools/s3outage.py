"""A B2 outage on demand: an HTTP proxy in front of the local S3 server that answers 503 for chosen key prefixes.

One world serves every e2e scenario at once, so an outage must hit one run only: requests whose path or
query names `runs/<run>/` fail while the outage lasts, everything else is forwarded unchanged.

    with outage_proxy(s3.endpoint) as proxy:
        proxy.fail("runs/r1/", for_s=30)     # r1's uploads, syncs and listings answer 503 for 30 s
        proxy.heal("runs/r1/")
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
          b"<Message>emulated B2 outage</Message></Error>")


class OutageProxy:
    def __init__(self, upstream: str):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self._outages: dict[str, float] = {}  # prefix -> until (monotonic); inf: until healed
        self._lock = threading.Lock()
        self.failed_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                if proxy.is_down(urllib.parse.unquote(self.path)):
                    with proxy._lock:
                        proxy.failed_requests += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_ERROR)))
                    self.end_headers()
                    self.wfile.write(_ERROR)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    self.send_response(reply.status, reply.reason)
                    head = self.command == "HEAD"  # no body, but the object's length is the answer
                    for name, value in reply.getheaders():
                        if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                            self.send_header(name, value)
                    if not head:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, prefix: str, for_s: float | None = None) -> None:
        with self._lock:
            self._outages[prefix] = float("inf") if for_s is None else time.monotonic() + for_s

    def heal(self, prefix: str) -> None:
        with self._lock:
            self._outages.pop(prefix, None)

    def is_down(self, url: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(prefix in url and until > now for prefix, until in self._outages.items())


@contextmanager
def outage_proxy(upstream: str) -> Iterator[OutageProxy]:
    proxy = OutageProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, name="s3-outage-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
