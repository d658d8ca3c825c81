"""How the http and json kinds' bytes get to the server: a lean HTTP/1.1 client on the event loop.

One new connection per request (nothing kept for a later run): the address
(IP literals used as written; names resolved on the http kind's own threads,
``probes.base.resolve``, in the probe's ``ip_family``), a non-blocking
connect, TLS with the probe's context (the peer certificate kept, even when
verification is off), an http proxy (absolute-form requests for http://, a
CONNECT tunnel for https://), the request written once, the reply parsed by
``probes.http_wire`` as it arrives, and the connection aborted when the reply
is complete, when the run fails and when it is cancelled.  Redirects are
followed here, all within the run's deadline.  What went wrong on the way
(refused, unreachable, TLS, name resolution, timeouts, a reply that is not
HTTP) becomes a ``TransportError`` with the failure reason and message.
What to send and how to judge the reply stay in ``probes.http``.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from .base import resolve, truncate
from .http_wire import (
    BodyTooLarge,
    ResponseReader,
    WireError,
    host_header,
    request_bytes,
    request_target,
)
from .oserrors import UNREACHABLE_ERRNOS
from .tls import ssl_reason

_FAMILIES = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}
_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TransportError(Exception):
    """The run failed on the way: ``reason`` is the failure reason, ``code`` the status if any."""

    def __init__(self, reason: str, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.reason, self.message, self.code = reason, truncate(message), code


class TooLarge(Exception):
    """The body is longer than max_body_bytes (status ``code``, the server's certificate)."""

    def __init__(self, code: int, peer_cert: bytes | None) -> None:
        super().__init__(code)
        self.code, self.peer_cert = code, peer_cert


def proxy_problem(proxy: str) -> str:
    """Why ``proxy`` cannot serve as the probe's proxy; empty when it can."""
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{proxy!r} is not an http:// or https:// proxy URL"
    if parts.username or parts.password:
        return "must not carry credentials (they would show in the probe's definition)"
    return ""


def basic_auth_header(username: str, password: str) -> str:
    """``Basic base64(user:password)``, latin-1 as browsers and requests send it."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode("latin-1")).decode()


@dataclass(slots=True)
class Request:
    """What to send and how: one per run, the same for every hop of a redirect chain."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    context: Callable[[], ssl.SSLContext]  # the probe's TLS context, asked for on an https hop
    server_name: str = ""
    proxy: str = ""
    ip_family: str = "auto"
    follow_redirects: bool = True
    max_redirects: int = 10
    max_body_bytes: int = 10 * 1024 * 1024
    timeout: float = 0.0  # for messages: the probe's timeout
    deadline: float = 0.0  # loop time the runner cuts the exchange (redirects included) at
    wires: dict[tuple[str, str], bytes] | None = None  # request bytes kept by (method, URL)
    stage: str = "connect"  # where a run cut at its deadline was: connect, proxy: connect, response


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    url: str
    peer_cert: bytes | None  # DER leaf certificate of the https server that answered


async def send(req: Request) -> Response:
    """The request, redirects followed; raises TransportError or TooLarge.

    The caller's runner cuts it at ``req.deadline`` (cancellation closes the
    socket at once); ``req.stage`` then says how far it got.
    """
    method, body, headers, url = req.method, req.body, req.headers, req.url
    hops = 0
    while True:
        resp = await _exchange(req, method, url, headers, body)
        location = resp.headers.get("location")
        if not req.follow_redirects or resp.status not in _REDIRECTS or location is None:
            return resp
        if hops >= req.max_redirects:
            raise TransportError("unexpected_response",
                                 f"more than {req.max_redirects} redirects, last to {location}",
                                 code=resp.status)
        hops += 1
        nxt = urljoin(url, location).partition("#")[0]
        parts = urlsplit(nxt)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("unexpected_response",
                                 f"redirect to {location!r}, not an http:// or https:// URL",
                                 code=resp.status)
        if (resp.status == 303 and method != "HEAD") or (resp.status in (301, 302) and method == "POST"):
            method, body = "GET", b""
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if _origin(urlsplit(url)) != _origin(parts):  # credentials stay with their origin
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = nxt


def _origin(p: SplitResult) -> tuple[str, str, int]:
    return p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


# --- one hop ---------------------------------------------------------------------


async def _exchange(req: Request, method: str, url: str, headers: dict[str, str],
                    body: bytes) -> Response:
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = request_target(parts.path, parts.query)
    proxy = urlsplit(req.proxy) if req.proxy else None
    if proxy is not None and not https:
        target = url.partition("#")[0]  # absolute form, as proxies expect
    wires = req.wires
    wire = wires.get((method, url)) if wires is not None else None
    if wire is None:
        wire = request_bytes(method, target, host_header(host, port, parts.scheme), headers, body)
        if wires is not None and len(wires) < 16:
            wires[(method, url)] = wire
    reader = ResponseReader(method, req.max_body_bytes)
    cert: bytes | None = None
    try:
        if https or (proxy is not None and proxy.scheme == "https"):
            cert = await _over_transport(req, reader, wire, host, port, https, proxy)
        elif proxy is not None:
            await _plain(req, reader, wire, proxy.hostname or "", proxy.port or 80, "proxy: ")
        else:
            await _plain(req, reader, wire, host, port, "")
        data = reader.body()
    except BodyTooLarge:
        raise TooLarge(reader.status, cert) from None
    except EOFError:
        raise _closed_early(https and proxy is None) from None
    except WireError as exc:
        raise TransportError("unexpected_response", str(exc),
                             code=reader.status if reader.head_done else -1) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise TransportError("tls", ssl_reason(exc)) from None
    except OSError as exc:
        if https and not reader.head_done and isinstance(exc, ConnectionResetError):
            raise _closed_early(True) from None
        raise _os_failure(exc, "", host, port) from None
    return Response(reader.status, reader.reason, reader.headers, data, url, cert)


async def _over_transport(req: Request, reader: ResponseReader, wire: bytes, host: str, port: int,
                          https: bool, proxy: SplitResult | None) -> bytes | None:
    """TLS (direct or through a CONNECT tunnel) on an asyncio transport; the peer's certificate."""
    ctx = req.context() if https else None
    server_name = req.server_name or host
    conn = _Conn()
    try:
        if proxy is not None:
            phost = proxy.hostname or ""
            pport = proxy.port or (443 if proxy.scheme == "https" else 80)
            pctx = req.context() if proxy.scheme == "https" else None
            await _connect(conn, phost, pport, req, pctx, phost, via="proxy: ")
            if https:
                await _tunnel(conn, host, port, req)
                await _start_tls(conn, ctx, server_name, req)
        else:
            await _connect(conn, host, port, req, ctx, server_name)
        req.stage = "response"
        cert = conn.peer_cert() if https else None
        conn.write(wire)
        try:
            await conn.read(reader)
        except BodyTooLarge:
            raise TooLarge(reader.status, cert) from None
        return cert
    finally:
        conn.abort()


async def _plain(req: Request, reader: ResponseReader, wire: bytes, host: str, port: int,
                 via: str) -> None:
    """Plain HTTP straight on a non-blocking socket: the first address that accepts gets the request."""
    req.stage = f"{via}connect"
    addresses = await _addresses(host, port, req.ip_family, via)
    loop = asyncio.get_running_loop()
    for i, (family, address) in enumerate(addresses):
        exchange = _PlainExchange(loop, req, reader, wire)
        try:
            await exchange.run(family, address)
            return
        except OSError as exc:
            if req.stage != "response":  # could not connect: the next address, or the failure
                if i + 1 < len(addresses):
                    continue
                raise _os_failure(exc, via, host, port) from None
            raise


class _PlainExchange:
    """Connect, send and read driven by the socket's readiness callbacks: no transport, one future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, req: Request, reader: ResponseReader,
                 wire: bytes) -> None:
        self.loop, self.req, self.reader, self.out = loop, req, reader, wire
        self.buf = bytearray()
        self.sock: socket.socket | None = None
        self.fd = -1
        self.done: asyncio.Future[None] = loop.create_future()
        self.reading = self.writing = False

    async def run(self, family: int, address: tuple[str, int]) -> None:
        sock = self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            self.fd = sock.fileno()
            err = sock.connect_ex(address)
            if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
                raise OSError(err, os.strerror(err))
            # On loopback and fast links the handshake is done by now: send at once,
            # and wait for writability only when the socket is not connected yet.
            self._send(first=True)
            await self.done
        finally:
            if self.writing:
                self.loop.remove_writer(self.fd)
            if self.reading:
                self.loop.remove_reader(self.fd)
            sock.close()

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def _send(self, first: bool = False) -> None:
        assert self.sock is not None
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            if not (first and exc.errno == errno.ENOTCONN):
                self._fail(exc)
                return
            n = 0
        if n and self.req.stage != "response":
            self.req.stage = "response"  # connected: from now on a failure is the reply's
            self.loop.add_reader(self.fd, self._on_read)
            self.reading = True
        self.out = self.out[n:]
        if self.out:
            if not self.writing:
                self.loop.add_writer(self.fd, self._on_writable)
                self.writing = True
        elif self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False

    def _on_writable(self) -> None:
        assert self.sock is not None
        if self.req.stage != "response":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(OSError(err, os.strerror(err)))
                return
        self._send()

    def _on_read(self) -> None:
        assert self.sock is not None
        if self.done.done():
            return
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:
            self._fail(exc)
            return
        try:
            if not data:
                self.reader.at_eof()
                self.done.set_result(None)
                return
            self.buf += data
            if self.reader.feed(self.buf):
                self.done.set_result(None)
        except Exception as exc:  # the reply is not HTTP, too large, cut short: the run's failure
            self._fail(exc)


def _closed_early(tls: bool) -> TransportError:
    if tls:
        # A TLS 1.3 server refusing the client certificate sends its alert after
        # the client finished the handshake: alert and reset race.
        return TransportError("tls", "the server closed the TLS connection before answering "
                                     "(a client certificate required or refused?)")
    return TransportError("error", "server closed the connection without a response")


async def _tunnel(conn: _Conn, host: str, port: int, req: Request) -> None:
    """CONNECT host:port through the proxy ``conn`` is connected to."""
    authority = host_header(host, port, "")  # always with the port
    if not authority.endswith(f":{port}"):
        authority = f"{authority}:{port}"
    conn.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    req.stage = "proxy: connect"
    reader = ResponseReader("HEAD", 0)  # a CONNECT reply's body is the tunnel: stop at the head
    try:
        await conn.read(reader, head_only=True)
    except EOFError:
        raise TransportError("error", "proxy: closed the connection without a response") from None
    except WireError as exc:
        raise TransportError("error", f"proxy: {exc}") from None
    except OSError as exc:
        raise _os_failure(exc, "proxy: ", host, port) from None
    if reader.status != 200:
        raise TransportError("error", f"proxy: HTTP {reader.status} {reader.reason}".strip())


async def _start_tls(conn: _Conn, ctx: ssl.SSLContext | None, server_name: str,
                     req: Request) -> None:
    assert ctx is not None and conn.transport is not None
    req.stage = "connect"
    conn.buf.clear()
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.start_tls(conn.transport, conn, ctx, server_hostname=server_name)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise TransportError("tls", ssl_reason(exc)) from None
    except OSError as exc:
        raise TransportError("tls", f"TLS handshake through the proxy failed: {exc}") from None
    if transport is None:
        raise TransportError("error", "proxy: the tunnel closed during the TLS handshake")
    conn.transport = transport


async def _connect(conn: _Conn, host: str, port: int, req: Request, ctx: ssl.SSLContext | None,
                   server_name: str, via: str = "") -> None:
    """Connect ``conn`` to host:port (first address that answers), with TLS when ``ctx``."""
    loop = asyncio.get_running_loop()
    req.stage = f"{via}connect"
    try:
        addresses = await _addresses(host, port, req.ip_family, via)
        sock: socket.socket | None = None
        last: OSError | None = None
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                break
            except OSError as exc:
                sock.close()
                sock, last = None, exc
            except BaseException:
                sock.close()
                raise
        if sock is None:
            assert last is not None
            raise _os_failure(last, via, host, port)
        try:
            await loop.create_connection(lambda: conn, sock=sock, ssl=ctx,
                                         server_hostname=server_name if ctx else None)
        except BaseException:
            sock.close()
            raise
    except TimeoutError:
        raise TransportError("timeout", f"{via}connect timed out after {req.timeout:g}s") from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise TransportError("tls", via + ssl_reason(exc)) from None
    except ConnectionResetError:
        raise _closed_early(ctx is not None and not via) from None
    except OSError as exc:
        raise _os_failure(exc, via, host, port) from None


async def _addresses(host: str, port: int, ip_family: str,
                     via: str) -> list[tuple[int, tuple[str, int]]]:
    """Where to connect: an IP literal as written, a name resolved on the kind's threads."""
    want = _FAMILIES.get(ip_family, socket.AF_UNSPEC)
    literal = _literal_family(host)
    if literal:
        if want not in (socket.AF_UNSPEC, literal):
            raise TransportError("error", f"{via}{host} is not an {_FAMILY_NAMES[want]} address "
                                          f"(ip_family: {ip_family})")
        return [(literal, (host, port))]
    try:
        infos = await resolve("http", host, port, want, socket.SOCK_STREAM)
    except socket.gaierror:
        raise TransportError("unreachable", f"{via}cannot resolve {host!r}") from None
    out = [(fam, (str(a[0]), int(a[1]))) for fam, _, _, _, a in infos
           if fam in (socket.AF_INET, socket.AF_INET6)]
    if not out:
        raise TransportError("unreachable", f"{via}cannot resolve {host!r}")
    return out


def _literal_family(host: str) -> int:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return 0


def _os_failure(exc: OSError, via: str, host: str, port: int) -> TransportError:
    peer = f" by {host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        return TransportError("refused", f"{via}connection refused{peer}")
    if exc.errno in UNREACHABLE_ERRNOS:
        return TransportError("unreachable", f"{via}{exc.strerror or exc}{peer}")
    if isinstance(exc, TimeoutError):
        return TransportError("timeout", f"{via}timed out{peer}")
    return TransportError("error", f"{via}{exc.strerror or exc}{peer}")


# --- the connection ------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One connection's bytes as they arrive; the reader parses them in place."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def read(self, reader: ResponseReader, head_only: bool = False) -> None:
        """Feed ``reader`` until its reply (or only its head) is complete."""
        while True:
            if self.buf:
                if head_only:
                    if reader.parse_head(self.buf) if not reader.head_done else True:
                        return
                elif reader.feed(self.buf):
                    return
            if self.eof:
                if self.error is not None and not (
                        reader.head_done and isinstance(self.error, ssl.SSLError)
                        and "EOF" in str(self.error)):
                    raise self.error
                reader.at_eof()
                return
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def peer_cert(self) -> bytes | None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
