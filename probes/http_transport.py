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

This module sends a request and follows its redirects, and picks each hop's
way: plain http on a bare socket (``probes.http_plain``), or an asyncio
transport for TLS and for a tunnel or an https proxy (``probes.http_tls``).
Where to connect is ``probes.http_addresses``, the failures' wording
``probes.http_failures``.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from .http_failures import TooLarge, TransportError, closed_early, os_failure
from .http_plain import plain
from .http_tls import over_transport
from .http_wire import (
    BodyTooLarge,
    ResponseReader,
    WireError,
    host_header,
    request_bytes,
    request_target,
)
from .tls import ssl_reason

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
            cert = await over_transport(req, reader, wire, host, port, https, proxy)
        elif proxy is not None:
            await plain(req, reader, wire, proxy.hostname or "", proxy.port or 80, "proxy: ")
        else:
            await plain(req, reader, wire, host, port, "")
        data = reader.body()
    except BodyTooLarge:
        raise TooLarge(reader.status, cert) from None
    except EOFError:
        raise closed_early(https and proxy is None) from None
    except WireError as exc:
        raise TransportError("unexpected_response", str(exc),
                             code=reader.status if reader.head_done else -1) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise TransportError("tls", ssl_reason(exc)) from None
    except OSError as exc:
        if https and not reader.head_done and isinstance(exc, ConnectionResetError):
            raise closed_early(True) from None
        raise os_failure(exc, "", host, port) from None
    return Response(reader.status, reader.reason, reader.headers, data, url, cert)
