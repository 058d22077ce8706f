"""The SSH addresses an instance has besides its sshd: Vast's proxy, and faulty or blocked direct ports.

On Vast an instance has two SSH addresses (vast-api.md §4.5): the proxy ``ssh_host:ssh_port``
(``sshN.vast.ai``, works on every machine) and the direct ``public_ipaddr`` + ``ports["22/tcp"]`` (faster,
blocked on some hosts). Here the direct address is the instance's sshd on 127.0.0.1, and the proxy is a
listener on 127.0.0.2 that forwards each connection to it, as Vast's gateway does: when sshd is down the proxy
still accepts and then closes the connection.

Faults use the same listeners: ``ssh_eof`` answers with an SSH banner and closes (paramiko's bare
``EOFError``), ``direct_blocked`` advertises a direct port that is bound but never listens (refused).

One thread accepts on every listener; each forwarded connection gets two pump threads.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable

PROXY_HOST = "127.0.0.2"  # another loopback address: the proxy is a different host from the direct one
DIRECT_HOST = "127.0.0.1"
BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"
FORWARD, BANNER_EOF = "forward", "banner_eof"


class Gateway:
    """Listeners that forward to an instance's sshd (or misbehave on purpose), all served by one thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listeners: dict[int, socket.socket] = {}
        self._dead: dict[int, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ssh-gateway", daemon=True)
        self._thread.start()

    def listen(self, host: str, port: int, target: Callable[[], int | None], mode: Callable[[], str]) -> int:
        """Listen on host:port (0: any free port); each connection goes to 127.0.0.1:target() as mode() says."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            if not port:
                raise
            sock.bind((host, 0))  # the old port is taken (an emulator restart): any free one
        sock.listen(64)
        sock.setblocking(False)
        bound = sock.getsockname()[1]
        with self._lock:
            self._listeners[bound] = sock
            self._selector.register(sock, selectors.EVENT_READ, (target, mode))
        self._wake()
        return bound

    def dead_port(self, host: str = DIRECT_HOST, port: int = 0) -> int:
        """A port that is bound but never listens: connections to it are refused, and nobody else gets it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.bind((host, 0))
        bound = sock.getsockname()[1]
        with self._lock:
            self._dead[bound] = sock
        return bound

    def close(self, port: int | None) -> None:
        if not port:
            return
        with self._lock:
            sock = self._listeners.pop(port, None)
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            dead = self._dead.pop(port, None)
        for s in (sock, dead):
            if s is not None:
                s.close()
        self._wake()

    def shutdown(self) -> None:
        self._closing.set()
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            ports = list(self._listeners) + list(self._dead)
        for port in ports:
            self.close(port)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _serve(self) -> None:
        while not self._closing.is_set():
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                try:
                    client, _ = key.fileobj.accept()
                except OSError:
                    continue
                target, mode = key.data
                threading.Thread(target=self._connection, args=(client, target, mode), daemon=True,
                                 name="ssh-gateway-conn").start()

    @staticmethod
    def _connection(client: socket.socket, target: Callable[[], int | None], mode: Callable[[], str]) -> None:
        client.setblocking(True)
        upstream = None
        try:
            if mode() == BANNER_EOF:
                client.sendall(BANNER)
                return
            port = target()
            if not port:
                return
            upstream = socket.create_connection((DIRECT_HOST, port), timeout=5)
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True, name="ssh-gateway-pump")
            back.start()
            _pump(client, upstream)
            back.join()
        except OSError:
            pass  # sshd is not listening (stopped, not up yet, died): accept, then close, as Vast's gateway does
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src -> dst until either side ends; then end both (SSH has no use for a half-closed connection)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
