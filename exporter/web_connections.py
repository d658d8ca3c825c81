"""The web server's connections: counted from accept, capped, and closed when idle.

``ConnectionServer`` is the listening socket's protocol factory.  It keeps the
cap on open connections (at the cap the connection idle longest is closed, or
the newcomer refused: 503 in plain text, a reset under TLS), closes a
connection idle past ``IDLE_TIMEOUT`` or whose headers take longer than
``HEADER_TIMEOUT`` (``sweep``), and runs each TLS handshake before handing the
connection to aiohttp.  Malformed requests are one debug line and a 400 with
the server's headers.  The open files limit is raised here too, and half of it
at most goes to connections.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import __version__
from .webconfig import WebConfig

log = logging.getLogger("probewatch.web")

# A connection with no request in progress is closed after IDLE_TIMEOUT; once a
# request's first byte arrived its headers must be complete within
# HEADER_TIMEOUT (its body's and the response's timeouts are the server's: web.py).
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0
SERVER_HEADER = f"probewatch/{__version__}"


# -- file descriptors ----------------------------------------------------------------


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit", extra={"soft": soft, "hard": hard,
                                                                     "error": str(exc)})
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(wanted: int, open_files: int) -> int:
    """At most half the open files go to HTTP connections: the rest stay for probes."""
    return max(16, min(wanted, open_files // 2))


# -- connections ---------------------------------------------------------------------


class Connection(web.RequestHandler):
    """aiohttp's protocol, with the timestamps the sweeper needs and our error responses."""

    server: ConnectionServer
    idle_since: float
    first_byte_at: float | None
    busy: bool

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.idle_since = time.monotonic()
        self.first_byte_at = None
        self.busy = False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy and self.first_byte_at is None and data:
            self.first_byte_at = time.monotonic()
        super().data_received(data)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status == 400 and isinstance(exc, HttpProcessingError):
            message = f"bad request: {_first_line(exc)}\n"
        response = super().handle_error(request, status, exc, message)
        response.headers["Server"] = SERVER_HEADER
        response.headers.update(self.server.config.headers)
        return response


def _first_line(exc: HttpProcessingError) -> str:
    lines = (exc.message or str(exc)).strip().splitlines()
    return lines[0].rstrip(":") if lines else "malformed request"


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: a malformed request is one debug line, never a traceback."""

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        text = msg % args if args else str(msg)
        if isinstance(exc, HttpProcessingError):
            self.logger.debug("bad request", extra={"detail": text, "error": _first_line(exc)})
        else:
            self.logger.error("request failed", extra={"detail": text, "error": repr(exc)})


class ConnectionServer(web.Server):
    """aiohttp's low-level server, counting connections and closing idle ones.

    It is the listening socket's protocol factory: plain connections go
    straight to aiohttp; with TLS each goes through ``_TlsGate``, so that a
    connection is counted (and can be refused or evicted) from accept on, not
    only once its handshake is done."""

    def __init__(self, handler: Any, config: WebConfig, max_connections: int, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.config = config
        self.max_connections = max_connections
        self.open: dict[Connection, asyncio.Transport] = {}
        self.handshaking: dict[asyncio.Transport, float] = {}
        self.refused = 0

    def __call__(self) -> Any:
        if self.config.tls is not None:
            return _TlsGate(self)
        if not self.admit():
            return _Refuse()
        return self.connection()

    def connection(self) -> Connection:
        conn = Connection(self, loop=self._loop, **self._kwargs)
        conn.server = self
        return conn

    def admit(self) -> bool:
        """Room for one more connection, closing the one idle longest if needed."""
        if len(self.open) + len(self.handshaking) < self.max_connections or self._evict():
            return True
        self.refused += 1
        return False

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open[handler] = transport

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.open.pop(handler, None)

    def _evict(self) -> bool:
        """At the cap, drop the connection doing nothing longest (no request, or a
        TLS handshake not done) so that a new scrape still gets in."""
        idle = [(c.first_byte_at or c.idle_since, c) for c in self.open if not c.busy]
        shaking = list(self.handshaking.items())
        oldest_idle = min(idle, key=lambda x: x[0], default=None)
        oldest_shake = min(shaking, key=lambda x: x[1], default=None)
        if oldest_shake is not None and (oldest_idle is None or oldest_shake[1] <= oldest_idle[0]):
            del self.handshaking[oldest_shake[0]]
            oldest_shake[0].abort()
            return True
        if oldest_idle is not None:
            self.open.pop(oldest_idle[1]).close()
            return True
        return False

    def sweep(self) -> None:
        now = time.monotonic()
        for conn, transport in list(self.open.items()):
            if conn.busy:
                continue
            if conn.first_byte_at is not None:
                expired = now - conn.first_byte_at > HEADER_TIMEOUT
            else:
                expired = now - conn.idle_since > IDLE_TIMEOUT
            if expired:
                self.open.pop(conn, None)
                transport.close()


class _Refuse(asyncio.Protocol):
    """Over the cap with every connection busy: answer 503 at once and close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        body = b"too many connections\n"
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                        b"Content-Type: text/plain; charset=utf-8\r\n"
                        + f"Server: {SERVER_HEADER}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body)
        transport.close()


class _TlsGate(asyncio.Protocol):
    """A TLS connection from accept to the end of its handshake, then handed to aiohttp."""

    def __init__(self, server: ConnectionServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.server.admit():
            transport.abort()  # TLS: no plain-text 503 to send; a reset is the fast refusal
            return
        transport.pause_reading()  # the ClientHello waits for start_tls
        self.server.handshaking[transport] = time.monotonic()
        asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        server = self.server
        pending = _Pending()
        assert server.config.tls is not None
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, pending, server.config.tls, server_side=True, ssl_handshake_timeout=HEADER_TIMEOUT)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception as exc:  # a failed handshake is the client's problem: one debug line
            log.debug("TLS handshake failed", extra={"client": _peer(transport), "error": str(exc) or repr(exc)})
            transport.abort()
            return
        finally:
            server.handshaking.pop(transport, None)
        if tls is None or pending.lost or transport.is_closing():
            transport.abort()
            return
        # The request may have come with the end of the handshake: replay it to aiohttp.
        conn = server.connection()
        tls.set_protocol(conn)
        conn.connection_made(tls)
        if pending.data:
            conn.data_received(b"".join(pending.data))

    def data_received(self, data: bytes) -> None:
        pass  # reading is paused until start_tls takes the transport over

    def connection_lost(self, exc: BaseException | None) -> None:
        pass  # the handshake task sees it


class _Pending(asyncio.Protocol):
    """Holds what arrives between the end of a TLS handshake and aiohttp taking over."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""
