"""Ping a SIP server with OPTIONS, or place a call and hang up (Moniteur's sip.py).

OPTIONS (the default) is up on a 2xx answer.  INVITE places a call and is up
once it reaches ``success_state`` (CALLING, EARLY, CONNECTING or CONFIRMED;
default CONFIRMED), then hangs up at once.  Return code: the final SIP status
(200, 404, 486, 503 ...), or the last one when a call succeeded early (180);
-1 when none came back.

    - name: pbx
      kind: sip
      target: "sip:127.0.0.1:5060"
      sip: {method: INVITE, success_state: EARLY}

Every sip probe of the process goes through one pjsua2 endpoint driven by one
worker thread (probes/sip_endpoint.py).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pjsua2  # noqa: F401 - a missing extra fails the config check (probes/registry.py)

from .base import Kind, Result, resolve
from .durations import format_duration
from .netaddr import is_ip
from .oserrors import os_error_reason
from .secret_files import CredentialError, read_credential
from .sip_endpoint import SipEndpoint, SipUnavailable
from .sip_handle import Handle
from .sip_request import Credentials, SipOutcome, SipRequest
from .spec import ProbeSpec
from .tls import TlsOptions

log = logging.getLogger("probewatch.sip")

# The pjsua2-python wheel's pjsua is built without PJ_HAS_IPV6: SIP runs over IPv6,
# media cannot, so a call to an IPv6 peer cannot be placed.
NO_IPV6_MEDIA = ("INVITE needs IPv6 media, which the pjsua2-python build lacks;"
                 " probe IPv6 peers with OPTIONS")
_URI_RE = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@;?\s]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)"
    r"(?::(?P<port>\d{1,5}))?(?P<params>(?:;[^;?\s]*)*)$",
    re.IGNORECASE)


@dataclass
class SipAuth:
    """Credentials for servers that challenge (digest).

    Options:
        username: the user name of the digest credentials.
        password_file: a file holding the password, read at every run.
        realm: answer challenges of this realm only (empty: any realm).
    """

    username: str
    password_file: str
    realm: str = ""

    def check(self) -> list[tuple[str, str]]:
        try:
            read_credential(self.password_file)
        except CredentialError as exc:
            return [("password_file", str(exc))]
        return []


@dataclass
class SipOptions:
    """``sip:`` block.

    Options:
        method: OPTIONS pings the server; INVITE places a call.
        success_state (default CONFIRMED): with INVITE, how far the call must get to count as up.
        local_port: the local SIP port (0: any); probes that set the same one share it.
        transport (default from the target): overrides the URI's transport.
        auth: digest credentials for servers that challenge (401/407).
        log_level: pjsip's log level, 0 to 6, routed into probewatch's log.
        tls: with transport tls (or a sips: target), the one tls block of every kind; pjsip checks
            the certificate against the target's host, so server_name is not supported here.
    """

    method: Literal["OPTIONS", "INVITE"] = "OPTIONS"
    success_state: Literal["CALLING", "EARLY", "CONNECTING", "CONFIRMED"] | None = None
    local_port: int = 0
    transport: Literal["udp", "tcp", "tls"] | None = None
    auth: SipAuth | None = None
    log_level: int = 3
    tls: TlsOptions | None = None
    MOVED: ClassVar[dict[str, str]] = {"ca_file": "tls.ca_file",
                                       "insecure_skip_verify": "tls.insecure_skip_verify"}

    def check(self) -> list[tuple[str, str]]:
        out = []
        if self.success_state is not None and self.method != "INVITE":
            out.append(("success_state", "is used only with method: INVITE"))
        if not 0 <= self.local_port <= 65535:
            out.append(("local_port", "must be from 0 (any) to 65535"))
        if not 0 <= self.log_level <= 6:
            out.append(("log_level", "must be a pjsip log level from 0 to 6"))
        if self.tls is not None and self.tls.server_name:
            out.append(("tls.server_name", "is not supported for sip: pjsip checks the certificate"
                        " against the target's host"))
        return out


@dataclass(frozen=True)
class SipTarget:
    scheme: str
    host: str  # without brackets
    port: int
    params: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4


def parse_target(uri: str) -> SipTarget:
    """Parse sip:host[:port][;params] or sips:...; raise ValueError fit for a config error."""
    match = _URI_RE.match(uri.strip())
    if match is None:
        raise ValueError(f"{uri!r} is not a SIP URI (sip:HOST[:PORT][;transport=tcp], sips:...;"
                         " IPv6 as sip:[ADDRESS]:PORT)")
    host = match["host"].strip("[]")
    if match["host"].startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {uri!r} is not an IPv6 address") from None
    scheme = match["scheme"].lower()
    port = int(match["port"]) if match["port"] else (5061 if scheme == "sips" else 5060)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in {uri!r} is not from 1 to 65535")
    params = {}
    for part in (match["params"] or "").split(";")[1:]:
        key, _, value = part.partition("=")
        params[key.lower()] = value.lower()
    transport = params.get("transport")
    if transport is not None and transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport {transport!r} in {uri!r} is not udp, tcp or tls")
    return SipTarget(scheme, host, port, params)


def transport_of(target: SipTarget, option: str | None) -> str:
    """The transport to use; raise ValueError when the URI and the option disagree."""
    in_uri = target.params.get("transport")
    if option and in_uri and option != in_uri:
        raise ValueError(f"is {option} but the target says ;transport={in_uri}")
    chosen = option or in_uri or ("tls" if target.scheme == "sips" else "udp")
    if target.scheme == "sips" and chosen != "tls":
        raise ValueError(f"is {chosen} but a sips: target needs tls")
    return chosen


class SipProbe(Kind[SipOptions]):
    Options = SipOptions

    def __init__(self, spec: ProbeSpec[SipOptions]) -> None:
        super().__init__(spec)
        self.target = parse_target(spec.target)
        self.transport = transport_of(self.target, self.options.transport)
        self.uri = spec.target.strip()
        if self.transport != "udp" and "transport" not in self.target.params \
                and self.target.scheme == "sip":
            self.uri += f";transport={self.transport}"
        self.success_state = self.options.success_state or "CONFIRMED"
        # The call of the run in progress: what a run cut at its deadline reached.
        self._handle: Handle | None = None
        _LEVELS.add(self.options.log_level)
        if _ENDPOINT is None:  # start it now, off the event loop, so the first run needn't
            threading.Thread(target=_start_quietly, name="pjsua2-start", daemon=True).start()

    @classmethod
    def validate(cls, spec: ProbeSpec[SipOptions]) -> list[tuple[str, str]]:
        try:
            target = parse_target(spec.target)
        except ValueError as exc:
            return [("target", str(exc))]
        opts = spec.options
        _LEVELS.add(opts.log_level)  # known before the endpoint starts with the highest
        out = []
        try:
            transport = transport_of(target, opts.transport)
        except ValueError as exc:
            return [("sip.transport", str(exc))]
        if opts.tls is not None and transport != "tls":
            out.append(("sip.tls", "is used only with transport tls (or a sips: target)"))
        if opts.method == "INVITE" and target.family == 6:
            out.append(("sip.method", NO_IPV6_MEDIA))
        return out

    @classmethod
    def shutdown(cls) -> None:
        """Destroy the endpoint (calls hung up, accounts released) within 2 seconds."""
        global _ENDPOINT
        with _ENDPOINT_LOCK:
            endpoint, _ENDPOINT = _ENDPOINT, None
        if endpoint is not None and not endpoint.stop(1.8):
            log.warning("the SIP endpoint did not stop within 1.8s")

    async def run(self, deadline: float) -> Result:
        loop = asyncio.get_running_loop()
        self._handle = None
        try:
            endpoint = await loop.run_in_executor(_STARTER, endpoint_for, max(_LEVELS, default=3))
        except SipUnavailable as exc:
            return Result.fail("error", str(exc))
        try:
            request = await self._request()
        except OSError as exc:
            return Result.fail(os_error_reason(exc), f"{self.spec.target}: {exc.strerror or exc}")
        except ValueError as exc:
            return Result.fail("error", f"sip.auth.password_file: {exc}")
        if request.method == "INVITE" and request.family == 6:
            return Result.fail("error", f"{self.spec.target} resolves to IPv6: {NO_IPV6_MEDIA}")
        handle = self._handle = endpoint.submit(request)
        try:
            # The scheduler cuts the wait at the deadline (timed_out says how far it got).
            outcome = await asyncio.shield(handle.future)
        except asyncio.CancelledError:
            # Cut or cancelled: the worker thread hangs the call up and forgets it.
            endpoint.abort(handle.ident)
            raise
        self._handle = None  # held no longer than the run (sip_handle.Handle says why)
        return self._result(outcome)

    async def _request(self) -> SipRequest:
        host, family = self.target.host, self.target.family
        if not is_ip(host):
            infos = await resolve("sip", host, self.target.port, 0, socket.SOCK_DGRAM)
            family = 6 if infos[0][0] == socket.AF_INET6 else 4
            host = str(infos[0][4][0])
        auth = self.options.auth
        creds = None
        if auth is not None:
            creds = Credentials(auth.username, read_credential(auth.password_file), auth.realm)
        return SipRequest(
            method=self.options.method, uri=self.uri, transport=self.transport, family=family,
            local_ip=local_address(host, self.target.port, family),
            local_port=self.options.local_port, credentials=creds,
            success_state=self.success_state, **self._tls_fields())

    def _tls_fields(self) -> dict[str, Any]:
        """The tls block as the SIP endpoint takes it (pjsip runs the TLS, not an SSLContext)."""
        tls = self.options.tls or TlsOptions()
        return {"ca_file": tls.ca_file or system_ca_file(),
                "verify_server": self.transport == "tls" and not tls.insecure_skip_verify,
                "cert_file": tls.cert_file, "key_file": tls.key_file, "min_version": tls.min_version}

    def timed_out(self, timeout: float) -> Result:
        """The run was cut at its deadline: say how far the call got (run() has aborted it)."""
        state = self._handle.state if self._handle is not None else ""
        self._handle = None
        within = format_duration(timeout)
        if self.options.method == "INVITE" and state:
            return Result.fail("timeout", f"call to {self.spec.target} reached {state}, not"
                               f" {self.success_state}, within {within}")
        return Result.fail("timeout", f"no answer to {self.options.method} from"
                           f" {self.spec.target} within {within}")

    def _result(self, outcome: SipOutcome) -> Result:
        method, target = self.options.method, self.spec.target
        status = f"{outcome.code} {outcome.text}".strip()
        if outcome.succeeded:
            if method == "INVITE":
                got = status if outcome.code > 0 else "no answer yet"
                return Result.ok(outcome.code, f"call to {target} reached {outcome.state}"
                                 f" ({got}); hung up")
            return Result.ok(outcome.code, f"{status} to OPTIONS from {target}")
        if outcome.origin == "transport":
            text = outcome.text.lower()
            reason = "refused" if "refused" in text else (
                "tls" if any(w in text for w in ("ssl", "tls", "certif")) else "unreachable")
            return Result.fail(reason, f"{target}: {outcome.text}")
        if outcome.origin == "timer":
            return Result.fail("timeout", f"no answer to {method} from {target} ({outcome.text})")
        if outcome.origin in ("local", "stopping"):
            return Result.fail("error", f"{method} to {target}: {outcome.text}")
        code = outcome.code
        if code in (401, 407) or (code == 403 and outcome.credentials_sent):
            if self.options.auth is None:
                return Result.fail("auth", f"{target} asks for credentials ({status});"
                                   " set sip.auth", code=code)
            return Result.fail("auth", f"{target} refused the credentials of"
                               f" {self.options.auth.username!r} ({status})", code=code)
        if code == 408:
            return Result.fail("timeout", f"{status} from {target}", code=code)
        where = f"; the call reached {outcome.state or 'no state'}" if method == "INVITE" else ""
        return Result.fail("unexpected_code", f"{status} to {method} from {target}{where}",
                           code=code)


def local_address(host: str, port: int, family: int) -> str:
    """The local address the kernel would use towards ``host``: bound and advertised."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))  # a UDP connect sends nothing: it picks the route
        return str(sock.getsockname()[0])


def system_ca_file() -> str:
    """The system's CA bundle, for verifying TLS peers when no ca_file is set."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return ""


# log_level of every sip probe set up so far: pjsip takes one level, when the endpoint starts.
_LEVELS: set[int] = set()
_ENDPOINT: SipEndpoint | None = None
_ENDPOINT_LOCK = threading.Lock()
# Starting the endpoint (once per process) blocks for up to its start timeout; it
# has its own thread so no other kind's work ever waits behind it.  After that a
# run only queues on the pjsua2 worker (sip_endpoint), which is sip's alone.
_STARTER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sip-start")
_TOLD: set[int] = set()


def endpoint_for(log_level: int) -> SipEndpoint:
    """The running endpoint, started on first use (blocking: call it off the event loop)."""
    global _ENDPOINT
    with _ENDPOINT_LOCK:
        if _ENDPOINT is not None and _ENDPOINT.failure:
            # a failed teardown may leave pjlib half alive: a second endpoint would abort
            raise SipUnavailable(f"{_ENDPOINT.failure}; restart the exporter")
        if _ENDPOINT is not None and not _ENDPOINT.stopped:
            if log_level > _ENDPOINT.log_level and log_level not in _TOLD:
                _TOLD.add(log_level)
                log.info("pjsip keeps the log level it started with until the exporter restarts",
                         extra={"level": _ENDPOINT.log_level, "asked": log_level})
            return _ENDPOINT
        endpoint = SipEndpoint(log_level)
        endpoint.start()
        if _ENDPOINT is None:
            atexit.register(_stop_at_exit)
        _ENDPOINT = endpoint
        return endpoint


def _start_quietly() -> None:
    try:
        endpoint_for(max(_LEVELS, default=3))
    except SipUnavailable as exc:  # the first run reports it
        log.debug("the SIP endpoint did not start", extra={"error": str(exc)})


def _stop_at_exit() -> None:
    # pjsua2 objects still alive when the interpreter exits abort it; stop first.
    SipProbe.shutdown()

