"""How the http and json kinds' bytes get to the server.

A fresh requests session per run, with our TLS context and per-run connection
classes that pin the address family and keep the peer certificate (so its
expiry is known even when verification is off); the proxy, if any; and the
mapping of what went wrong on the way (refused, unreachable, TLS, name
resolution, timeouts) to a failed Result.  What to send and how to judge the
reply stay in ``probes.http``.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .base import Result, truncate
from .tls import TlsOptions, ssl_context, ssl_reason

# insecure_skip_verify is the operator's explicit choice for one probe; urllib3's
# warning on every such request would only flood the exporter's log.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

# DER leaf certificates seen during one run, by (lower-case host, port).
PeerCerts = dict[tuple[str, int], bytes]


def proxy_problem(proxy: str) -> str:
    """Why ``proxy`` cannot serve as the probe's proxy; empty when it can."""
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{proxy!r} is not an http:// or https:// proxy URL"
    if parts.username or parts.password:
        return "must not carry credentials (they would show in the probe's definition)"
    return ""


def proxies_for(proxy: str) -> dict[str, str]:
    """The ``proxies=`` argument for requests: every scheme through ``proxy``, or none."""
    return {"http": proxy, "https": proxy} if proxy else {}


def open_session(
    *, tls: TlsOptions, ip_family: str, max_redirects: int, peer_certs: PeerCerts
) -> requests.Session:
    """A session for one run, filling ``peer_certs`` as TLS connections are made."""
    session = requests.Session()
    session.trust_env = False  # the exporter's environment must not change what is probed
    session.max_redirects = max_redirects
    adapter = _Adapter(tls, ip_family, peer_certs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def peer_cert(url: str, peer_certs: PeerCerts) -> bytes | None:
    """The DER leaf certificate the https server at ``url`` presented, if any."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return None
    return peer_certs.get(((parts.hostname or "").lower(), parts.port or 443))


# --- per-run connection classes ------------------------------------------------


class _Connection(HTTPConnection):
    family: ClassVar[int] = 0

    def _new_conn(self) -> socket.socket:
        return _open_with_family(self, self.family, super()._new_conn)


class _TlsConnection(HTTPSConnection):
    family: ClassVar[int] = 0
    peer_certs: ClassVar[PeerCerts] = {}

    def _new_conn(self) -> socket.socket:
        return _open_with_family(self, self.family, super()._new_conn)

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) if hasattr(self.sock, "getpeercert") else None
        if der:
            host = self._tunnel_host or self.host
            self.peer_certs[(host.lower(), self._tunnel_port or self.port)] = der


def _open_with_family(
    conn: HTTPConnection, family: int, open_socket: Callable[[], socket.socket]
) -> socket.socket:
    if not family:
        return open_socket()
    name = conn._dns_host
    try:
        infos = socket.getaddrinfo(name, conn.port, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    conn._dns_host = str(infos[0][4][0])  # connect to this address, keep the name for TLS
    try:
        return open_socket()
    finally:
        conn._dns_host = name


class _Adapter(HTTPAdapter):
    """Our TLS context and connection classes in place of requests' defaults."""

    def __init__(self, tls: TlsOptions, ip_family: str, peer_certs: PeerCerts) -> None:
        family = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}.get(ip_family, 0)
        conn = type("Connection", (_Connection,), {"family": family})
        tls_conn = type(
            "TlsConnection", (_TlsConnection,), {"family": family, "peer_certs": peer_certs}
        )
        self._pools: dict[str, type[HTTPConnectionPool]] = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": conn}),
            "https": type("TlsPool", (HTTPSConnectionPool,), {"ConnectionCls": tls_conn}),
        }
        self._tls = tls
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") != "https":
            return host_params, {}
        pool_kwargs: dict[str, Any] = {
            "ssl_context": ssl_context(self._tls),
            "cert_reqs": "CERT_NONE" if self._tls.insecure_skip_verify else "CERT_REQUIRED",
        }
        if self._tls.server_name:
            pool_kwargs["server_hostname"] = self._tls.server_name
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The context already carries the trust store and client certificate."""


# --- what went wrong on the way --------------------------------------------------


def transport_failure(exc: BaseException, timeout: float) -> Result:
    """The failed Result for an error raised while sending or receiving."""
    chain = list(_causes(exc))
    via = "proxy: " if isinstance(exc, requests.exceptions.ProxyError) else ""
    if isinstance(exc, requests.ConnectTimeout):
        return Result.fail("timeout", f"{via}connect timed out after {timeout:g}s")
    timeouts = (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)
    if any(isinstance(e, timeouts) for e in chain):
        return Result.fail("timeout", f"{via}no response within {timeout:g}s")
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return Result.fail("tls", via + ssl_reason(e))
        if isinstance(e, urllib3.exceptions.NameResolutionError):
            return Result.fail("error", f"{via}cannot resolve {e.conn.host!r}")
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return Result.fail("refused", f"{via}connection refused{_peer(chain)}")
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return Result.fail("unreachable", f"{via}{e.strerror or e}{_peer(chain)}")
    broken = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
    if isinstance(exc, broken):
        return Result.fail("unexpected_response", f"broken body: {_innermost(chain)}")
    return Result.fail("error", truncate(via + _innermost(chain)))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (cause, context, args, urllib3's reason)."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        more = [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
        todo.extend(e for e in more if isinstance(e, BaseException))


def _peer(chain: list[BaseException]) -> str:
    for e in chain:
        conn = getattr(e, "conn", None)
        if isinstance(conn, HTTPConnection):
            return f" by {conn.host}:{conn.port}"
    return ""


def _innermost(chain: list[BaseException]) -> str:
    return str(chain[-1]) or type(chain[-1]).__name__
