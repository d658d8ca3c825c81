"""kind http: one HTTP(S) request per run, checked for status code, body and JSON.

    - name: moc
      kind: http
      target: http://127.0.0.1:5005/api/v1/cmd
      http:
        method: POST
        json: {action: hello}
        expect_status: 2xx
        expect: [{path: "$.status", equals: true}]

The return code is the HTTP status.  Extra series: the body length
(probewatch_probe_http_content_length_bytes) and, for https, the leaf
certificate's notAfter (probewatch_probe_http_cert_expiry_timestamp_seconds),
read even when verification is off.  The request side (``RequestOptions``,
``fetch``) also serves the json kind.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from cryptography import x509
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from exporter import __version__

from .base import Reading, Result, run_blocking, truncate
from .expectations import (
    JsonExpectation,
    StatusCodes,
    StatusSet,
    compile_regex,
    json_failures,
    load_json,
)
from .tls import TlsOptions, ssl_context, ssl_reason, unreadable

CERT_EXPIRY = "probewatch_probe_http_cert_expiry_timestamp_seconds"
CONTENT_LENGTH = "probewatch_probe_http_content_length_bytes"

# insecure_skip_verify is the operator's explicit choice for one probe; urllib3's
# warning on every such request would only flood the exporter's log.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Credentials belong in files (basic_auth, bearer_token_file) so they never show
# in the probe's definition, which the API and `probewatch probe` print.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")


@dataclass
class BasicAuth:
    """``basic_auth: {username: probe, password_file: /etc/probewatch/pw}``."""

    username: str = ""
    password_file: str = ""

    def check(self) -> list[tuple[str, str]]:
        if self.username and not self.password_file:
            return [("password_file", "is required with username")]
        if self.password_file and not self.username:
            return [("username", "is required with password_file")]
        return [("password_file", why)] if (why := secret_file_problem(self.password_file)) else []


@dataclass
class RequestOptions:
    """What to send and how to connect; shared by the http and json kinds."""

    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    json_body: Any = field(default=None, metadata={"key": "json"})
    expect_status: StatusCodes = "200-399"
    follow_redirects: bool = True
    max_redirects: int = 10
    tls: TlsOptions = field(default_factory=TlsOptions)
    basic_auth: BasicAuth = field(default_factory=BasicAuth)
    bearer_token_file: str = ""
    proxy: str = ""
    ip_family: Literal["auto", "ip4", "ip6"] = "auto"
    max_body_bytes: int = 10 * 1024 * 1024
    status_set: StatusSet = field(
        default=StatusSet(((200, 399),), "200-399"), init=False, repr=False, compare=False
    )

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self.method = self.method.upper()
        if not _TOKEN_RE.match(self.method):
            out.append(("method", f"{self.method!r} is not an HTTP method"))
        for name, value in self.headers.items():
            if not _TOKEN_RE.match(name):
                out.append((f"headers.{name}", "is not a valid header name"))
            elif name.lower() in _CREDENTIAL_HEADERS:
                out.append((f"headers.{name}", "credentials go in basic_auth or bearer_token_file "
                            "(read from a file, never shown in the probe's definition)"))
            elif "\n" in value or "\r" in value:
                out.append((f"headers.{name}", "must not contain line breaks"))
        if self.body and self.json_body is not None:
            out.append(("json", "set body or json, not both"))
        try:
            self.status_set = StatusSet.parse(self.expect_status)
        except ValueError as exc:
            out.append(("expect_status", str(exc)))
        if self.max_redirects < 0:
            out.append(("max_redirects", "must be 0 or more"))
        if self.max_body_bytes < 1:
            out.append(("max_body_bytes", "must be at least 1"))
        if self.bearer_token_file:
            if self.basic_auth.username:
                out.append(("bearer_token_file", "set basic_auth or bearer_token_file, not both"))
            elif why := secret_file_problem(self.bearer_token_file):
                out.append(("bearer_token_file", why))
        if self.proxy and (why := _proxy_problem(self.proxy)):
            out.append(("proxy", why))
        return out


@dataclass
class HttpOptions(RequestOptions):
    """``http:`` block: the request, then what the reply must hold."""

    body_regex: str | list[str] = field(default_factory=list)
    body_not_regex: str | list[str] = field(default_factory=list)
    expect: list[JsonExpectation] = field(default_factory=list)
    body_patterns: list[re.Pattern[str]] = field(default_factory=list, init=False, repr=False)
    body_not_patterns: list[re.Pattern[str]] = field(default_factory=list, init=False, repr=False)

    def check(self) -> list[tuple[str, str]]:
        out = super().check()
        for key in ("body_regex", "body_not_regex"):
            value = getattr(self, key)
            patterns = []
            for i, text in enumerate([value] if isinstance(value, str) else value):
                try:
                    patterns.append(compile_regex(text))
                except ValueError as exc:
                    out.append((key if isinstance(value, str) else f"{key}[{i}]", str(exc)))
            setattr(self, key.replace("_regex", "_patterns"), patterns)
        return out


def secret_file_problem(path: str) -> str:
    """Why a credential file cannot serve (unreadable or empty); empty when it can."""
    if why := unreadable(path):
        return why
    if path and not read_secret(path):
        return f"{path!r} is empty"
    return ""


def read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip("\r\n")


def _proxy_problem(proxy: str) -> str:
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{proxy!r} is not an http:// or https:// proxy URL"
    if parts.username or parts.password:
        return "must not carry credentials (they would show in the probe's definition)"
    return ""


def url_problems(target: str) -> list[tuple[str, str]]:
    """The target must be an absolute http:// or https:// URL."""
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return [("target", f"{target!r} is not a valid URL: {exc}")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [("target", f"{target!r} must be an http:// or https:// URL")]
    return []


# --- transport: per-run connection classes that pin the address family and keep
# the peer certificate, so its expiry is known even when verification is off.


class _Connection(HTTPConnection):
    family: ClassVar[int] = 0

    def _new_conn(self) -> socket.socket:
        return _open_with_family(self, self.family, super()._new_conn)


class _TlsConnection(HTTPSConnection):
    family: ClassVar[int] = 0
    peer_certs: ClassVar[dict[tuple[str, int], bytes]] = {}

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

    def __init__(self, opts: RequestOptions, peer_certs: dict[tuple[str, int], bytes]) -> None:
        family = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}.get(opts.ip_family, 0)
        conn = type("Connection", (_Connection,), {"family": family})
        tls_conn = type(
            "TlsConnection", (_TlsConnection,), {"family": family, "peer_certs": peer_certs}
        )
        self._pools: dict[str, type[HTTPConnectionPool]] = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": conn}),
            "https": type("TlsPool", (HTTPSConnectionPool,), {"ConnectionCls": tls_conn}),
        }
        self._tls = opts.tls
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


# --- one request ---------------------------------------------------------------


@dataclass
class Fetched:
    """A response received in full."""

    status: int
    phrase: str
    body: bytes
    charset: str
    readings: list[Reading]

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


class FetchFailed(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.message)
        self.result = result


def fetch(spec: Any, opts: RequestOptions) -> Fetched:
    """Send the request once (blocking); raise FetchFailed with the failed Result.

    A status outside ``expect_status`` is a failure too (reason unexpected_code).
    """
    deadline = time.monotonic() + spec.timeout
    peer_certs: dict[tuple[str, int], bytes] = {}
    headers = {"User-Agent": f"probewatch/{__version__}", **opts.headers}
    try:
        auth = _auth_header(opts)
    except OSError as exc:
        raise FetchFailed(Result.fail("error", f"cannot read credentials: {exc}")) from None
    headers.update(auth)
    with requests.Session() as session:
        session.trust_env = False  # the exporter's environment must not change what is probed
        session.max_redirects = opts.max_redirects
        adapter = _Adapter(opts, peer_certs)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            resp = session.request(
                opts.method,
                spec.target,
                headers=headers,
                data=opts.body.encode() if opts.body else None,
                json=opts.json_body,
                timeout=(spec.timeout, spec.timeout),
                allow_redirects=opts.follow_redirects,
                proxies={"http": opts.proxy, "https": opts.proxy} if opts.proxy else {},
                stream=True,
                hooks={"response": _stop_after(deadline, spec.timeout)},
            )
            with resp:
                readings = _cert_readings(resp.url, peer_certs)
                body = _read_body(resp, deadline, opts.max_body_bytes, spec.timeout, readings)
        except requests.TooManyRedirects as exc:
            last = exc.response
            code = last.status_code if last is not None else -1
            where = f", last to {last.headers.get('Location', '?')}" if last is not None else ""
            raise FetchFailed(Result.fail(
                "unexpected_response", f"more than {opts.max_redirects} redirects{where}", code=code
            )) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchFailed(_failure(exc, spec)) from None
    readings.append(Reading(CONTENT_LENGTH, float(len(body)), "Length of the response body"))
    got = Fetched(resp.status_code, resp.reason or "", body, _charset(resp), readings)
    if got.status not in opts.status_set:
        raise FetchFailed(Result.fail(
            "unexpected_code",
            f"HTTP {got.status} {got.phrase}, expected {opts.status_set.text}".replace("  ", " "),
            code=got.status,
            readings=readings,
        ))
    return got


def _stop_after(deadline: float, timeout: float) -> Callable[..., None]:
    """A response hook ending a redirect chain once the run's time is up.

    requests gives each hop its own timeout; without this a long chain would
    keep the worker thread busy long after the scheduler gave up on the run.
    """

    def hook(resp: requests.Response, **_: Any) -> None:
        if time.monotonic() > deadline:
            resp.close()
            raise FetchFailed(Result.fail("timeout", f"no final response within {timeout:g}s",
                                          code=resp.status_code))

    return hook


def _auth_header(opts: RequestOptions) -> dict[str, str]:
    if opts.bearer_token_file:
        return {"Authorization": f"Bearer {read_secret(opts.bearer_token_file).strip()}"}
    if opts.basic_auth.username:
        password = read_secret(opts.basic_auth.password_file)
        auth = requests.auth._basic_auth_str(opts.basic_auth.username, password)
        return {"Authorization": auth}
    return {}


def _read_body(
    resp: requests.Response, deadline: float, limit: int, timeout: float, readings: list[Reading]
) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise FetchFailed(Result.fail(
                "unexpected_response", f"body is larger than max_body_bytes ({limit})",
                code=resp.status_code, readings=readings,
            ))
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise FetchFailed(Result.fail(
                "timeout", f"body not complete within {timeout:g}s", code=resp.status_code,
                readings=readings,
            ))
    return b"".join(chunks)


def _charset(resp: requests.Response) -> str:
    m = re.search(r"charset=\"?([\w.:-]+)", resp.headers.get("Content-Type", ""), re.IGNORECASE)
    return m.group(1) if m else "utf-8"


def _cert_readings(url: str, peer_certs: dict[tuple[str, int], bytes]) -> list[Reading]:
    parts = urlsplit(url)
    if parts.scheme != "https":
        return []
    der = peer_certs.get(((parts.hostname or "").lower(), parts.port or 443))
    if der is None:
        return []
    try:
        not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:  # a certificate cryptography cannot parse: no reading, not a failure
        return []
    return [Reading(CERT_EXPIRY, not_after, "Unix time the server's leaf certificate expires")]


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


def _failure(exc: BaseException, spec: Any) -> Result:
    chain = list(_causes(exc))
    via = "proxy: " if isinstance(exc, requests.exceptions.ProxyError) else ""
    if isinstance(exc, requests.ConnectTimeout):
        return Result.fail("timeout", f"{via}connect timed out after {spec.timeout:g}s")
    timeouts = (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)
    if any(isinstance(e, timeouts) for e in chain):
        return Result.fail("timeout", f"{via}no response within {spec.timeout:g}s")
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


def _peer(chain: list[BaseException]) -> str:
    for e in chain:
        conn = getattr(e, "conn", None)
        if isinstance(conn, HTTPConnection):
            return f" by {conn.host}:{conn.port}"
    return ""


def _innermost(chain: list[BaseException]) -> str:
    return str(chain[-1]) or type(chain[-1]).__name__


# --- the kind ------------------------------------------------------------------


class RequestProbe:
    """The shape of a kind that makes one request per run and judges the reply."""

    Options: ClassVar[type[RequestOptions]] = RequestOptions

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @classmethod
    def validate(cls, spec: Any) -> list[tuple[str, str]]:
        return url_problems(spec.target)

    async def run(self) -> Result:
        return await run_blocking(self.run_once)

    def run_once(self) -> Result:
        try:
            got = fetch(self.spec, self.spec.options)
        except FetchFailed as failed:
            return failed.result
        return self.judge(got)

    def judge(self, got: Fetched) -> Result:
        raise NotImplementedError


class HttpProbe(RequestProbe):
    """One request; up when the status, body patterns and JSON expectations hold."""

    Options = HttpOptions

    def judge(self, got: Fetched) -> Result:
        return check_reply(got, self.spec.options)


def check_reply(got: Fetched, opts: HttpOptions) -> Result:
    """Body patterns, then JSON expectations; the first unmet one fails the run."""
    code, readings = got.status, got.readings
    problems = []
    if opts.body_patterns or opts.body_not_patterns:
        text = got.text
        problems += [
            f"body does not match regex {p.pattern!r}"
            for p in opts.body_patterns
            if not p.search(text)
        ]
        for p in opts.body_not_patterns:
            if m := p.search(text):
                problems.append(f"body matches regex {p.pattern!r} ({m.group()[:40]!r})")
    if not problems and opts.expect:
        try:
            problems = json_failures(opts.expect, load_json(got.body))
        except ValueError as exc:
            problems = [str(exc)]
    if problems:
        return Result.fail("unexpected_response", truncate("; ".join(problems)), code=code,
                           readings=readings)
    return Result.ok(code, f"HTTP {got.status} {got.phrase}".strip(), readings=readings)
