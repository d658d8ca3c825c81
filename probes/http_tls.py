"""HTTP over an asyncio transport: TLS with the probe's context (the peer certificate kept,
even when verification is off), and every exchange through a proxy that needs more than
a plain socket (a CONNECT tunnel for https://, an https:// proxy).

The connection (``_Conn``) keeps the bytes as they arrive and ``probes.http_wire``
parses them in place; it is aborted when the reply is complete, when the run
fails and when it is cancelled.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING

from .http_addresses import addresses_of
from .http_failures import TooLarge, TransportError, closed_early, os_failure
from .http_wire import BodyTooLarge, ResponseReader, WireError, host_header
from .tls import ssl_reason

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from .http_transport import Request


async def over_transport(req: Request, reader: ResponseReader, wire: bytes, host: str, port: int,
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
        raise os_failure(exc, "proxy: ", host, port) from None
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
        addresses = await addresses_of(host, port, req.ip_family, via)
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
            raise os_failure(last, via, host, port)
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
        raise closed_early(ctx is not None and not via) from None
    except OSError as exc:
        raise os_failure(exc, via, host, port) from None


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
