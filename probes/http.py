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
``fetch``) also serves the json kind; how the request travels (a lean HTTP/1.1
client on the event loop: connection, TLS, proxy, redirects, transport errors)
is in ``probes.http_transport``, the bytes on the wire in ``probes.http_wire``.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from cryptography import x509

from . import __version__
from . import readings as catalogue
from .base import Kind, Reading, Result, truncate
from .expectations import (
    Expectation,
    Expectations,
    StatusCodes,
    StatusSet,
    compile_regex,
    expectation_list,
    judge,
)
from .http_failures import TooLarge, TransportError
from .http_transport import Request, basic_auth_header, proxy_problem, send
from .secret_files import CredentialError, credential_problem, read_credential
from .tls import TlsOptions, ssl_context, ssl_reason

CERT_EXPIRY = catalogue.HTTP_CERT_EXPIRY.name
CONTENT_LENGTH = catalogue.HTTP_CONTENT_LENGTH.name

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Credentials belong in files (basic_auth, bearer_token_file) so they never show
# in the probe's definition, which the API and `probewatch probe` print.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")


@dataclass
class BasicAuth:
    """``basic_auth: {username: probe, password_file: /etc/probewatch/pw}``.

    Options:
        username: the user name sent with HTTP basic auth.
        password_file: a file holding the password (a trailing newline is ignored).
    """

    username: str = ""
    password_file: str = ""

    def check(self) -> list[tuple[str, str]]:
        if self.username and not self.password_file:
            return [("password_file", "is required with username")]
        if self.password_file and not self.username:
            return [("username", "is required with password_file")]
        return [("password_file", why)] if (why := credential_problem(self.password_file)) else []


@dataclass
class RequestOptions:
    """What to send and how to connect; shared by the http and json kinds.

    Options:
        method: the HTTP method, case-insensitive (GET, POST, HEAD, ...).
        headers: extra request headers (credentials go in basic_auth or bearer_token_file).
        body: request body, sent as written (set Content-Type in headers).
        json: request body as YAML/JSON data, sent as JSON; set body or json, not both.
        expect_status: status codes that count as success.
        follow_redirects: follow 3xx Location headers; false checks the 3xx itself.
        max_redirects: more redirects than this fail the run.
        tls: how the server is verified and the client identifies itself.
        basic_auth: HTTP basic auth, the password read from a file.
        bearer_token_file: a file holding a token, sent as Authorization: Bearer TOKEN.
        proxy: http://HOST:PORT forward proxy for http and https targets.
        ip_family: ip4 or ip6 resolves the host in that family only; auto lets the resolver choose.
        max_body_bytes: a longer body fails the run.
    """

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
            elif why := credential_problem(self.bearer_token_file):
                out.append(("bearer_token_file", why))
        if self.proxy and (why := proxy_problem(self.proxy)):
            out.append(("proxy", why))
        return out


@dataclass
class HttpOptions(RequestOptions):
    """``http:`` block: the request, then what the reply must hold.

    Options:
        expect: what the body must hold: text, {regex: ...}, {not_regex: ...} or {path: ...} items
            (JSON path checks; the body must then be JSON); the one expectation list of every kind.
        body_regex: shorthand for {regex: ...} items, checked before expect.
        body_not_regex: shorthand for {not_regex: ...} items, checked before expect.
    """

    body_regex: str | list[str] = field(default_factory=list)
    body_not_regex: str | list[str] = field(default_factory=list)
    expect: Expectations = field(default_factory=list)
    # check(): body_regex and body_not_regex as items, then expect's, in the order they are judged.
    expectations: list[Expectation] = field(default_factory=list, init=False, repr=False)

    def check(self) -> list[tuple[str, str]]:
        out = super().check()
        items = []
        for key in ("body_regex", "body_not_regex"):
            value = getattr(self, key)
            for i, text in enumerate([value] if isinstance(value, str) else value):
                try:
                    compiled = compile_regex(text)
                except ValueError as exc:
                    out.append((key if isinstance(value, str) else f"{key}[{i}]", str(exc)))
                    continue
                item = Expectation(**{key.removeprefix("body_"): text})
                item.compiled_regex = compiled
                items.append(item)
        self.expectations = items + expectation_list(self.expect)
        return out


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


class Plan:
    """What every run of one probe sends, worked out once (credentials excepted: read per run)."""

    def __init__(self, spec: Any, opts: RequestOptions) -> None:
        headers = {"User-Agent": f"probewatch/{__version__}", **opts.headers}
        if opts.json_body is not None:
            self.body = json.dumps(opts.json_body).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        else:
            self.body = opts.body.encode()
        self.headers = headers
        self.auth = bool(opts.bearer_token_file or opts.basic_auth.username)
        self.context = functools.partial(_context, opts.tls)
        # The request's bytes by (method, URL), kept across runs when nothing in them
        # is read per run (credentials are: a rotated file is used at the next run).
        self.wires: dict[tuple[str, str], bytes] | None = None if self.auth else {}


async def fetch(spec: Any, opts: RequestOptions, deadline: float, plan: Plan | None = None,
                probe: RequestProbe | None = None) -> Fetched:
    """Send the request once; raise FetchFailed with the failed Result.

    The whole exchange (redirects and body included) runs on the event loop
    until ``deadline`` (loop time), where the runner cuts it (``probe.current``
    then tells ``timed_out`` how far it got); a status outside ``expect_status``
    is a failure too (reason unexpected_code).
    """
    timeout = spec.timeout
    if plan is None:
        plan = Plan(spec, opts)
    headers = plan.headers
    if plan.auth:
        try:
            headers = {**headers, **_auth_header(opts)}
        except CredentialError as exc:
            raise FetchFailed(Result.fail("error", str(exc))) from None
    req = Request(
        opts.method, spec.target, headers, plan.body, plan.context, opts.tls.server_name,
        opts.proxy, opts.ip_family, opts.follow_redirects, opts.max_redirects,
        opts.max_body_bytes, timeout, deadline, wires=plan.wires,
    )
    if probe is not None:
        probe.current = req
    try:
        resp = await send(req)
    except TransportError as exc:
        raise FetchFailed(Result.fail(exc.reason, exc.message, code=exc.code)) from None
    except TooLarge as exc:
        raise FetchFailed(Result.fail(
            "unexpected_response", f"body is larger than max_body_bytes ({opts.max_body_bytes})",
            code=exc.code, readings=_cert_readings(exc.peer_cert),
        )) from None
    except _TlsFiles as exc:
        raise FetchFailed(Result.fail("tls", f"cannot load TLS files: {exc}")) from None
    readings = _cert_readings(resp.peer_cert)
    readings.append(catalogue.HTTP_CONTENT_LENGTH.reading(len(resp.body)))
    got = Fetched(resp.status, resp.reason, resp.body, _charset(resp.headers), readings)
    if got.status not in opts.status_set:
        raise FetchFailed(Result.fail(
            "unexpected_code",
            f"HTTP {got.status} {got.phrase}, expected {opts.status_set.text}".replace("  ", " "),
            code=got.status,
            readings=readings,
        ))
    return got


class _TlsFiles(Exception):
    """The probe's CA, certificate or key file cannot be loaded (at the first https hop)."""


# Contexts for tls blocks that name no file, by the block's values: nothing on
# disk can change under them, so no stat and no deep key building per run.
_PLAIN_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}


def _context(tls: TlsOptions) -> ssl.SSLContext:
    """The probe's TLS context, asked for only when a hop is https (also after a redirect)."""
    try:
        if tls.ca_file or tls.cert_file or tls.key_file:
            return ssl_context(tls)  # shared, rebuilt when a file changes
        key = tuple(vars(tls).values())
        ctx = _PLAIN_CONTEXTS.get(key)
        if ctx is None:
            ctx = _PLAIN_CONTEXTS[key] = ssl_context(tls)
        return ctx
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise _TlsFiles(ssl_reason(exc)) from None


def _auth_header(opts: RequestOptions) -> dict[str, str]:
    if opts.bearer_token_file:
        return {"Authorization": f"Bearer {read_credential(opts.bearer_token_file).strip()}"}
    if opts.basic_auth.username:
        password = read_credential(opts.basic_auth.password_file)
        return {"Authorization": basic_auth_header(opts.basic_auth.username, password)}
    return {}


def _charset(headers: dict[str, str]) -> str:
    m = re.search(r"charset=\"?([\w.:-]+)", headers.get("content-type", ""), re.IGNORECASE)
    return m.group(1) if m else "utf-8"


_NOT_AFTER: dict[bytes, float | None] = {}  # a server's certificate, parsed once


def _cert_readings(der: bytes | None) -> list[Reading]:
    if der is None:
        return []
    if der in _NOT_AFTER:
        not_after = _NOT_AFTER[der]
    else:
        try:
            not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
        except ValueError:  # a certificate cryptography cannot parse: no reading, not a failure
            not_after = None
        if len(_NOT_AFTER) >= 1024:
            _NOT_AFTER.clear()
        _NOT_AFTER[der] = not_after
    if not_after is None:
        return []
    return [catalogue.HTTP_CERT_EXPIRY.reading(not_after)]


# --- the kind ------------------------------------------------------------------


class RequestProbe(Kind):
    """The shape of a kind that makes one request per run and judges the reply."""

    Options: ClassVar[type[RequestOptions]] = RequestOptions

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.plan = Plan(spec, spec.options)
        self.current: Request | None = None  # the run under way: where it is, if cut

    @classmethod
    def validate(cls, spec: Any) -> list[tuple[str, str]]:
        return url_problems(spec.target)

    async def run(self, deadline: float) -> Result:
        try:
            got = await fetch(self.spec, self.options, deadline, self.plan, self)
        except FetchFailed as failed:
            return failed.result
        return self.judge(got)

    def timed_out(self, timeout: float) -> Result:
        """Cut at the deadline: say whether the connection or the reply was awaited."""
        stage = self.current.stage if self.current is not None else "connect"
        if stage == "response":
            return Result.fail("timeout", f"no response within {timeout:g}s")
        return Result.fail("timeout", f"{stage} timed out after {timeout:g}s")

    def judge(self, got: Fetched) -> Result:
        raise NotImplementedError


class HttpProbe(RequestProbe):
    """One request; up when the status, body patterns and JSON expectations hold."""

    Options = HttpOptions

    def judge(self, got: Fetched) -> Result:
        return check_reply(got, self.spec.options)


def check_reply(got: Fetched, opts: HttpOptions) -> Result:
    """The expectations, in order (body_regex, body_not_regex, expect); the first unmet one fails the run."""
    code, readings = got.status, got.readings
    if opts.expectations and (unmet := judge(opts.expectations, got.text, "body", got=False)):
        return Result.fail("unexpected_response", truncate(unmet), code=code, readings=readings)
    return Result.ok(code, f"HTTP {got.status} {got.phrase}".strip(), readings=readings)
