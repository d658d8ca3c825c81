"""Small real TCP servers on loopback for probe tests (ports chosen by the kernel)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class TcpServer:
    """Accepts connections on 127.0.0.1 (or ::1) and hands each to ``handler``.

    Everything the peers sent is kept in ``received`` (one bytes item per
    connection) so tests can check what the probe wrote; after ``close`` it
    holds every connection's, since close waits for their handlers (2 s at most).
    """

    def __init__(self, handler: Callable[[socket.socket], bytes],
                 family: int = socket.AF_INET) -> None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.target = f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        self.handler = handler
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._handlers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            handler = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self._handlers.append(handler)
            handler.start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                self.received.append(self.handler(conn))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        deadline = time.monotonic() + 2
        for handler in self._handlers:
            handler.join(max(0.0, deadline - time.monotonic()))


def read_all(conn: socket.socket, limit: float = 2.0) -> bytes:
    """Read until the peer closes (or ``limit`` seconds pass)."""
    conn.settimeout(limit)
    data = b""
    try:
        while chunk := conn.recv(4096):
            data += chunk
    except (TimeoutError, OSError):
        pass
    return data


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
