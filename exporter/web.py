"""probewatch's HTTP server: aiohttp on its own event loop thread, serving a ``Router``.

The routes, and the Request and Response handlers see, are exporter/routing.py's.
Handlers are synchronous and may block briefly (rendering /metrics, writing the
state file), so they run in a small thread pool, never on the server's loop and
never on the probes' loop.

What the server adds around every handler, in one place (``WebServer``):
strict HTTP/1.1 parsing (aiohttp's: a request with both Transfer-Encoding and
Content-Length, or a bad length, is answered 400 and the connection closed),
a listen backlog of ``BACKLOG``, idle, header and body read timeouts and a cap
on open connections (exporter/web_connections.py), request bodies limited to
``MAX_BODY`` (413), gzip when the client accepts it (exporter/metrics_route.py),
the web config's basic auth and headers, ``Server: probewatch/VERSION``, and one
request line per request at debug level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from probes.netaddr import split_listen_address

from .logs import Throttle
from .metrics_route import encode
from .routing import Request, Response, Router
from .web_connections import IDLE_TIMEOUT, SERVER_HEADER, Connection, ConnectionServer, ProtocolLog
from .webconfig import WebConfig

log = logging.getLogger("probewatch.web")
# Refusals and failures that a client or a flood can repeat: the first of each
# kind per 10s in full, then one summary line with the count.
_refusals = Throttle(log, "refused {count} more request{s} ({what}) in the last {seconds}", field="refusal")
_failures = Throttle(log, "{count} more failure{s} ({what}) in the last {seconds}", field="failure")

MAX_BODY = 1 << 20
BACKLOG = 1024
ACCEPT_BATCH = 16
# Once a request's headers are in, its body must arrive within BODY_TIMEOUT; a
# response the client does not read within WRITE_TIMEOUT is abandoned (the
# idle and header timeouts are the connections': web_connections.py).
BODY_TIMEOUT = 10.0
WRITE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 512
HANDLER_THREADS = 8


def parse_listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT; raise ValueError naming what is wrong (probes.netaddr's)."""
    return split_listen_address(text)



class BodyTooLarge(Exception):
    pass


class WebServer:
    """The router served over HTTP (or HTTPS, per the web config) from a thread of its own."""

    def __init__(self, router: Router, host: str, port: int, config: WebConfig | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.router = router
        self.config = config or WebConfig()
        self.max_connections = max_connections
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not host:
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self._sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError:
            self._sock.close()
            raise
        self._loop = asyncio.new_event_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="web")
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._started = threading.Event()
        self._server: ConnectionServer | None = None
        self._listener: asyncio.Server | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls is not None else "http"

    def start(self) -> None:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        else:
            self._sock.close()
            self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop's side -------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(_loop_exception)
        try:
            self._loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(self) -> None:
        self._server = ConnectionServer(self._handle, self.config, self.max_connections,
                               keepalive_timeout=IDLE_TIMEOUT,
                               logger=ProtocolLog(logging.getLogger("probewatch.web"), {}),
                               access_log=None)
        # TLS, when configured, is started per connection by the connection server (web_connections._TlsGate), not here.
        # asyncio accepts up to `backlog` sockets per wake-up before any protocol
        # can refuse one: keep that batch small so a flood cannot take the open
        # files past the cap, then give the kernel's queue its full length.
        self._listener = await self._loop.create_server(self._server, sock=self._sock, backlog=ACCEPT_BATCH)
        self._sock.listen(BACKLOG)
        self._sweeper = self._loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            assert self._server is not None
            self._server.sweep()

    async def _shutdown(self) -> None:
        """Stop accepting, give requests in flight a moment, then drop every connection."""
        self._sweeper.cancel()
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.shutdown(1.0), 2.0)
            for transport in list(self._server.open.values()):
                transport.abort()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _handle(self, raw: web.BaseRequest) -> web.StreamResponse:
        conn = raw.protocol
        if isinstance(conn, Connection):
            conn.busy = True
        started = time.monotonic()
        try:
            return await self._respond(raw, started)
        finally:
            if isinstance(conn, Connection):
                conn.busy = False
                conn.first_byte_at = None
                conn.idle_since = time.monotonic()

    async def _respond(self, raw: web.BaseRequest, started: float) -> web.StreamResponse:
        close = False
        split = urlsplit(raw.raw_path)
        try:
            body = await asyncio.wait_for(_read_body(raw), BODY_TIMEOUT)
        except BodyTooLarge:
            response, close = Response.text("request body too large\n", 413), True
        except TimeoutError:
            response, close = Response.text(f"request body not received within {BODY_TIMEOUT:g}s\n", 408), True
        except (ConnectionError, HttpProcessingError) as exc:
            response, close = Response.text(f"request body not received: {exc}\n", 400), True
        else:
            request = Request(raw.method, split.path, parse_qs(split.query), raw.headers, body,
                              client=raw.remote or "")
            response = await self._loop.run_in_executor(self._pool, self._call, request)
        pieces, encoding = await self._loop.run_in_executor(
            self._pool, encode, response, raw.headers.get("Accept-Encoding", ""))
        out = web.StreamResponse(status=response.status)
        out.headers["Server"] = SERVER_HEADER
        if response.status not in (204, 304):
            out.headers["Content-Type"] = response.content_type
            out.content_length = sum(len(p) for p in pieces)
        if encoding:
            out.headers["Content-Encoding"] = encoding
        if encoding or response.status == 200:
            out.headers["Vary"] = "Accept-Encoding"
        out.headers.update(self.config.headers)
        out.headers.update(response.headers)
        if close:
            out.force_close()
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await out.prepare(raw)
                if raw.method != "HEAD":
                    for piece in pieces:
                        await out.write(piece)
                await out.write_eof()
        except TimeoutError:
            if raw.transport is not None:
                raw.transport.abort()
        log.debug("request", extra={
            "method": raw.method, "path": split.path, "status": response.status,
            "client": raw.remote or "", "encoding": encoding or "identity",
            "duration_seconds": round(time.monotonic() - started, 6),
            "user_agent": raw.headers.get("User-Agent", "")})
        return out

    def _call(self, request: Request) -> Response:
        """Authenticate, then dispatch; runs in the handler pool."""
        authorization = request.headers.get("Authorization") or ""
        own = authorization[:7].lower() == "bearer " and self.router.checks_bearer(request.method, request.path)
        refused = None if own else self.config.authenticate(authorization)
        if refused is not None:
            _refusals.log(logging.WARNING, "bad credentials", "request refused: bad credentials",
                          extra={"path": request.path, "client": request.client})
            return Response.text(refused + "\n", 401,
                                 headers={"WWW-Authenticate": 'Basic realm="probewatch"'})
        try:
            return self.router.dispatch(request)
        except Exception:
            _failures.log(logging.ERROR, f"handler for {request.path}", "handler failed",
                          extra={"path": request.path}, exc_info=True)
            return Response.text("internal error\n", 500)


async def _read_body(raw: web.BaseRequest) -> bytes:
    if raw.content_length is not None and raw.content_length > MAX_BODY:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await raw.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge()
        chunks.append(chunk)


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
        _failures.log(logging.WARNING, "accept", "cannot accept connections",
                      extra={"error": exc.strerror or str(exc)})
        return
    if isinstance(exc, OSError | ssl.SSLError):  # a peer going away or failing its handshake
        log.debug("connection error", extra={"error": str(exc)})
        return
    _failures.log(logging.ERROR, "server", "web server error",
                  extra={"detail": context.get("message", ""), "error": repr(exc)})
