"""How the http and json kinds' bytes get to the server: aiohttp on the event loop.

One aiohttp session per run, with a connector that pins the address family,
resolves names on the http kind's own resolver threads (``probes.base.resolve``),
never keeps a connection for a later run, and uses our shared TLS context; the
proxy, if any (https through CONNECT); the peer certificate read from the
connection (so its expiry is known even when verification is off); and the
mapping of what went wrong on the way (refused, unreachable, TLS, name
resolution, timeouts) to a failed Result.  What to send and how to judge the
reply stay in ``probes.http``.

Nothing here blocks a thread: a run the scheduler cuts is cancelled, and the
cancellation closes its socket at once.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .base import Result, resolve, truncate
from .oserrors import UNREACHABLE_ERRNOS
from .tls import ssl_reason

_FAMILIES = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}


def proxy_problem(proxy: str) -> str:
    """Why ``proxy`` cannot serve as the probe's proxy; empty when it can."""
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{proxy!r} is not an http:// or https:// proxy URL"
    if parts.username or parts.password:
        return "must not carry credentials (they would show in the probe's definition)"
    return ""


class _KindResolver(AbstractResolver):
    """Names resolved on the http kind's own threads, not the loop's shared executor."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await resolve("http", host, port, family, socket.SOCK_STREAM)
        out: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            out.append({"hostname": host, "host": str(address[0]), "port": int(address[1]),
                        "family": fam, "proto": proto, "flags": socket.AI_NUMERICHOST})
        if not out:
            raise OSError(None, "DNS lookup failed")
        return out

    async def close(self) -> None:
        pass


_RESOLVER = _KindResolver()


def open_session(*, ip_family: str, timeout: float) -> aiohttp.ClientSession:
    """A session for one run: no pooling across runs, no environment, no cookies kept."""
    connector = _Connector(
        family=_FAMILIES.get(ip_family, socket.AF_UNSPEC),
        resolver=_RESOLVER,
        force_close=True,
        use_dns_cache=False,
        limit=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=True,
        trust_env=False,  # the exporter's environment must not change what is probed
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout),
        auto_decompress=True,
    )


def peer_cert(session: aiohttp.ClientSession, resp: aiohttp.ClientResponse) -> bytes | None:
    """The DER leaf certificate the https server of ``resp`` presented, if any."""
    connector = session.connector
    if not isinstance(connector, _Connector) or resp.url.scheme != "https":
        return None
    return connector.peer_certs.get(((resp.url.host or "").lower(), resp.url.port or 443))


class _Connector(aiohttp.TCPConnector):
    """Keeps each TLS peer's leaf certificate, read as the connection is made.

    Read here and not from the response: a short reply may be complete (and its
    connection released) before the caller sees it.  The certificate is kept
    even when verification is off, so its expiry is still exported.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.peer_certs: dict[tuple[str, int], bytes] = {}

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        proto = await super()._create_connection(req, traces, timeout)
        transport = getattr(proto, "transport", None)
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None and (der := ssl_object.getpeercert(binary_form=True)):
            self.peer_certs[((req.host or "").lower(), req.port or 443)] = der
        return proto


# --- what went wrong on the way --------------------------------------------------


def transport_failure(exc: BaseException, timeout: float, tls: bool = False) -> Result:
    """The failed Result for an error raised while sending or receiving.

    ``tls``: the exchange was over TLS.  A TLS 1.3 server refusing the client
    certificate sends its alert after the client has finished the handshake,
    so the alert and the reset race; a reset before any response on a TLS
    connection is reported as the TLS failure it almost always is.
    """
    chain = list(_causes(exc))
    via = "proxy: " if any(isinstance(e, (aiohttp.ClientProxyConnectionError,
                                          aiohttp.ClientHttpProxyError)) for e in chain) else ""
    if any(isinstance(e, aiohttp.ConnectionTimeoutError) for e in chain):
        return Result.fail("timeout", f"{via}connect timed out after {timeout:g}s")
    if any(isinstance(e, (TimeoutError, aiohttp.ServerTimeoutError)) for e in chain):
        return Result.fail("timeout", f"{via}no response within {timeout:g}s")
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorCertificateError):
            return Result.fail("tls", via + ssl_reason(e.certificate_error))
        if isinstance(e, ssl.SSLError):
            return Result.fail("tls", via + ssl_reason(e))
    for e in chain:
        if isinstance(e, (aiohttp.ClientConnectorDNSError, socket.gaierror)):
            host = getattr(e, "host", "") or _host_of(chain)
            return Result.fail("unreachable", f"{via}cannot resolve {host!r}")
    reset = (ConnectionResetError, aiohttp.ServerDisconnectedError)
    if tls and not via and any(isinstance(e, reset) for e in chain):
        return Result.fail("tls", "the server closed the TLS connection before answering "
                                  "(a client certificate required or refused?)")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return Result.fail("error", f"proxy: HTTP {exc.status} {exc.message}".strip())
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return Result.fail("refused", f"{via}connection refused{_peer(chain)}")
        if isinstance(e, OSError) and e.errno in UNREACHABLE_ERRNOS:
            return Result.fail("unreachable", f"{via}{e.strerror or e}{_peer(chain)}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Result.fail("unexpected_response", f"broken body: {_innermost(chain)}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return Result.fail("unexpected_response", truncate(f"bad response: {exc.message}"))
    return Result.fail("error", truncate(via + _innermost(chain)))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (cause, context, args, aiohttp's os_error)."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        more = [cur.__cause__, cur.__context__, getattr(cur, "_os_error", None), *cur.args]
        todo.extend(e for e in more if isinstance(e, BaseException))


def _host_of(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorError):
            return e.host
    return "?"


def _peer(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorError):
            return f" by {e.host}:{e.port}"
    return ""


def _innermost(chain: list[BaseException]) -> str:
    last = chain[-1]
    text = str(last) or type(last).__name__
    if isinstance(last, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    return text


def basic_auth_header(username: str, password: str) -> str:
    """``Basic base64(user:password)``, latin-1 as browsers and requests send it."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode("latin-1")).decode()
