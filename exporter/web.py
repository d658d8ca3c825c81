"""probewatch's HTTP server: aiohttp on its own event loop thread, with a route table.

Routes are (method, regex) -> handler(Request) -> Response, registered with
``Router.add``.  Handlers are synchronous and may block briefly (rendering
/metrics, writing the state file), so they run in a small thread pool, never on
the server's loop and never on the probes' loop.  HEAD is served by the GET
handler without a body; OPTIONS answers 204 with the allowed methods; an
unknown path answers 404 and a known path with another method 405 with Allow.

What the server adds around every handler, in one place (``WebServer``):
strict HTTP/1.1 parsing (aiohttp's: a request with both Transfer-Encoding and
Content-Length, or a bad length, is answered 400 and the connection closed),
a listen backlog of ``BACKLOG``, idle, header and body read timeouts, a cap on
open connections, request bodies limited to ``MAX_BODY`` (413), gzip when the
client accepts it, the web config's basic auth and headers, ``Server:
probewatch/VERSION``, and one request line per request at debug level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from probes.netaddr import split_listen_address

from . import __version__
from .logs import Throttle
from .webconfig import WebConfig

log = logging.getLogger("probewatch.web")
# Refusals and failures that a client or a flood can repeat: the first of each
# kind per 10s in full, then one summary line with the count.
_refusals = Throttle(log, "refused {count} more request{s} ({what}) in the last {seconds}", field="refusal")
_failures = Throttle(log, "{count} more failure{s} ({what}) in the last {seconds}", field="failure")

MAX_BODY = 1 << 20
BACKLOG = 1024
ACCEPT_BATCH = 16
# A connection with no request in progress is closed after IDLE_TIMEOUT; once a
# request's first byte arrived its headers must be complete within
# HEADER_TIMEOUT, and its body within BODY_TIMEOUT; a response the client does
# not read within WRITE_TIMEOUT is abandoned.
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
WRITE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 512
HANDLER_THREADS = 8
# Bodies shorter than this go out uncompressed: gzip would not pay for itself.
GZIP_MIN_BYTES = 1024
CHUNK_BYTES = 1 << 20
SERVER_HEADER = f"probewatch/{__version__}"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    client: str = ""

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a message fit for a client."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes | list[bytes] = b""  # a list is written piece by piece (large /metrics pages)
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **kw: Any) -> Response:
        return cls(status, (json.dumps(data, indent=1) + "\n").encode(), "application/json", **kw)

    @classmethod
    def text(cls, text: str, status: int = 200, **kw: Any) -> Response:
        return cls(status, text.encode(), **kw)

    def pieces(self) -> list[bytes]:
        return self.body if isinstance(self.body, list) else [self.body]


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._bearer: set[tuple[str, str]] = set()

    def add(self, method: str, pattern: str, handler: Handler, *, bearer_auth: bool = False) -> None:
        """Route METHOD PATTERN to handler.  ``bearer_auth``: the handler checks an
        ``Authorization: Bearer`` token itself, so a request carrying one skips the
        web config's basic auth (both cannot travel in the one header)."""
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))
        if bearer_auth:
            self._bearer.add((method, pattern))

    def checks_bearer(self, method: str, path: str) -> bool:
        return any(m == method and re.match(f"^{p}$", path) for m, p in self._bearer)

    def allowed(self, path: str) -> list[str]:
        methods = {m for m, rx, _ in self._routes if rx.match(path)}
        if "GET" in methods:
            methods.add("HEAD")
        if methods:
            methods.add("OPTIONS")
        return sorted(methods)

    def dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        for m, rx, handler in self._routes:
            match = rx.match(request.path)
            if match and m == method:
                request.params = match.groupdict()
                return handler(request)
        allowed = self.allowed(request.path)
        if not allowed:
            return Response.text("not found\n", 404)
        if request.method == "OPTIONS":
            return Response(204, headers={"Allow": ", ".join(allowed)})
        return Response.text(f"method {request.method} not allowed\n", 405,
                             headers={"Allow": ", ".join(allowed)})


def parse_listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or :PORT; raise ValueError naming what is wrong (probes.netaddr's)."""
    return split_listen_address(text)


# -- gzip: the one place that decides ----------------------------------------------


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value admits gzip (``gzip;q=0`` and ``*;q=0`` refuse it)."""
    star = None
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def coalesced(pieces: list[bytes], size: int = CHUNK_BYTES) -> list[bytes]:
    """The pieces joined into chunks of about ``size`` bytes.

    A large /metrics page comes as thousands of small pieces; each write, and
    each zlib call (which drops and retakes the GIL the probes' loop also
    wants), costs per call, so both get few large chunks instead."""
    out: list[bytes] = []
    batch: list[bytes] = []
    length = 0
    for piece in pieces:
        batch.append(piece)
        length += len(piece)
        if length >= size:
            out.append(b"".join(batch))
            batch, length = [], 0
    if batch:
        out.append(b"".join(batch))
    return out


def gzipped(pieces: list[bytes]) -> bytes:
    """The pieces as one gzip member, at zlib level 1 (fast; /metrics text shrinks ~18x)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(chunk) for chunk in coalesced(pieces, 4 * CHUNK_BYTES)]
    out.append(compressor.flush())
    return b"".join(out)


def encode(response: Response, accept_encoding: str) -> tuple[list[bytes], str]:
    """The body to send and its Content-Encoding ('' for identity)."""
    pieces = response.pieces()
    if "Content-Encoding" in response.headers:  # encoded by the handler (serve --workers' /metrics)
        return coalesced(pieces), response.headers["Content-Encoding"]
    if (response.status >= 200 and response.status not in (204, 304)
            and sum(len(p) for p in pieces) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding)):
        return [gzipped(pieces)], "gzip"
    return coalesced(pieces), ""


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


class _Connection(web.RequestHandler):
    """aiohttp's protocol, with the timestamps the sweeper needs and our error responses."""

    server: _Server
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


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: a malformed request is one debug line, never a traceback."""

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        text = msg % args if args else str(msg)
        if isinstance(exc, HttpProcessingError):
            self.logger.debug("bad request", extra={"detail": text, "error": _first_line(exc)})
        else:
            self.logger.error("request failed", extra={"detail": text, "error": repr(exc)})


class _Server(web.Server):
    """aiohttp's low-level server, counting connections and closing idle ones.

    It is the listening socket's protocol factory: plain connections go
    straight to aiohttp; with TLS each goes through ``_TlsGate``, so that a
    connection is counted (and can be refused or evicted) from accept on, not
    only once its handshake is done."""

    def __init__(self, handler: Any, config: WebConfig, max_connections: int, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.config = config
        self.max_connections = max_connections
        self.open: dict[_Connection, asyncio.Transport] = {}
        self.handshaking: dict[asyncio.Transport, float] = {}
        self.refused = 0

    def __call__(self) -> Any:
        if self.config.tls is not None:
            return _TlsGate(self)
        if not self.admit():
            return _Refuse()
        return self.connection()

    def connection(self) -> _Connection:
        conn = _Connection(self, loop=self._loop, **self._kwargs)
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

    def __init__(self, server: _Server) -> None:
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
        self._server: _Server | None = None
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
        self._server = _Server(self._handle, self.config, self.max_connections,
                               keepalive_timeout=IDLE_TIMEOUT,
                               logger=_ProtocolLog(logging.getLogger("probewatch.web"), {}),
                               access_log=None)
        # TLS, when configured, is started per connection by _TlsGate, not here.
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
        if isinstance(conn, _Connection):
            conn.busy = True
        started = time.monotonic()
        try:
            return await self._respond(raw, started)
        finally:
            if isinstance(conn, _Connection):
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
