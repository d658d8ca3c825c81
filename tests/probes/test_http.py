"""kind http against real HTTP and HTTPS servers on loopback (ports chosen at run time).

The servers and the test PKI here also serve tests/probes/test_json_status.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import gzip
import json
import selectors
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.config import parse_config
from probes.base import Result
from probes.http import CERT_EXPIRY, CONTENT_LENGTH
from probes.registry import get_kind
from tests.probes.run import once, run_once
from tests.probes.servers import TcpServer, closed_port
from tests.support import ROOT, probewatch_argv

# --- servers -------------------------------------------------------------------

MEGAPHONE = {
    "OK": "Everything is groovy man.",
    "Unknown": "No services are registered!",
    "Warning": "Houston, I think we have a problem.",
    "Critical": "Houston, we have a problem.",
}
OK_BODY = b"hello from the probewatch tests\n"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Routes(BaseHTTPRequestHandler):
    """200, 503, slow, redirects, bad JSON, Megaphone levels, MOC-style POSTs, auth."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.route()

    do_POST = do_HEAD = do_PUT = do_GET

    def route(self) -> None:
        url = urlsplit(self.path)  # absolute when we are used as a forward proxy
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        path = url.path
        if path == "/ok":
            self.reply(200, OK_BODY, "text/plain; charset=utf-8")
        elif path == "/unavailable":
            self.reply(503, b"down for maintenance\n")
        elif path == "/slow":
            time.sleep(float(query.get("s", "2")))
            self.reply(200, b"late\n")
        elif path == "/redirect":
            self.reply(302, b"", location="/ok")
        elif path.startswith("/drip/"):  # a slow redirect chain: /drip/N -> /drip/N-1 -> ... /ok
            time.sleep(0.15)
            hops = int(path.rsplit("/", 1)[1])
            self.reply(302, b"", location=f"/drip/{hops - 1}" if hops > 1 else "/ok")
        elif path == "/loop":
            self.reply(302, b"", location="/loop")
        elif path == "/badjson":
            self.reply(200, b"{status: ok", "application/json")
        elif path == "/big":
            self.reply(200, b"x" * int(query.get("n", "100000")))
        elif path.startswith("/megaphone/"):
            self.reply_json(200, megaphone_document(path.rsplit("/", 1)[1]))
        elif path.startswith("/moc/"):
            self.moc(path.rsplit("/", 1)[1], body)
        elif path == "/auth":
            ok = self.headers.get("Authorization") == self.server.expected_auth
            self.reply_json(200 if ok else 401, {"authorized": ok})
        elif path == "/headers":
            self.reply_json(200, dict(self.headers))
        else:
            self.reply(404, b"no such route\n")

    def do_CONNECT(self) -> None:
        """Tunnel to a loopback origin, as a forward proxy does for https targets."""
        host, _, port = self.path.rpartition(":")
        self.server.seen.append(Seen("CONNECT", self.path, dict(self.headers), b""))
        if host.strip("[]") not in ("localhost", "127.0.0.1", "::1"):
            self.send_error(403, "loopback origins only")
            return
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            pipe(self.connection, upstream, seconds=10)
        self.close_connection = True

    def moc(self, answer: str, body: bytes) -> None:
        # pfurl's shape: a JSON message in, {"status": true} out when the service is well.
        try:
            message = json.loads(body)
        except ValueError:
            self.reply_json(400, {"status": False, "error": "body is not JSON"})
            return
        if self.headers.get("Content-Type") != "application/json" or "action" not in message:
            self.reply_json(400, {"status": False, "error": "not a pfurl message"})
            return
        self.reply_json(200, {"status": answer == "true", "echo": message["action"]})

    def reply_json(self, code: int, doc: Any) -> None:
        self.reply(code, json.dumps(doc).encode(), "application/json")

    def reply(self, code: int, body: bytes, ctype: str = "text/plain",
              location: str = "") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def pipe(a: socket.socket, b: socket.socket, seconds: float) -> None:
    """Copy bytes both ways until either side closes (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                except OSError:
                    return


def megaphone_document(level: str) -> dict[str, Any]:
    """Megaphone's /status shape; a few odd ones for the failure paths."""
    odd: dict[str, dict[str, Any]] = {
        "numeric": {"status": 2, "message": "level given as a number"},
        "lower": {"status": "warning", "message": "lower-case level"},
        "purple": {"status": "Purple", "message": "no such level"},
        "nostatus": {"date": "2013-06-06T14:49:26CDT", "message": "forgot the status"},
        "values": {"status": "OK", "message": "with numbers", "queue": 7, "load": 0.25,
                   "name": "not a number", "flag": True, "nested": {"depth": 3}},
        "nomessage": {"status": "Critical"},
    }
    if level in odd:
        return odd[level]
    message = MEGAPHONE.get(level, f"{level} reported")
    return {"status": level, "date": "2013-06-06T14:49:26CDT", "message": message,
            "version": "2.0.0", "id": "foo"}


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, tls: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), Routes)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.seen: list[Seen] = []
        self.expected_auth = ""
        scheme = "https" if tls else "http"
        shown_host = f"[{host}]" if ":" in host else host
        self.base = f"{scheme}://{shown_host}:{self.server_address[1]}"


@contextmanager
def serving(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[LoopbackServer]:
    server = LoopbackServer(host, tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- a test PKI: a CA, a server certificate and a client certificate -------------


@dataclass
class Pki:
    dir: Path
    ca: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    client_cert: Path = field(init=False)
    client_key: Path = field(init=False)
    not_after: datetime.datetime = field(init=False)

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          signer: ec.EllipticCurvePrivateKey, not_after: datetime.datetime,
          ca: bool = False, names: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Server certificate for localhost and status.example.invalid only (no IP name)."""
    pki = Pki(directory)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    pki.not_after = now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probewatch test CA")])
    ca = _cert("probewatch test CA", ca_key, ca_name, ca_key, now + datetime.timedelta(days=90),
               ca=True)
    pki.ca = directory / "ca.pem"
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, names in (("server", ("localhost", "status.example.invalid")), ("client", ())):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"probewatch test {role}", key, ca_name, ca_key, pki.not_after,
                     names=names)
        cert_path, key_path = directory / f"{role}.pem", directory / f"{role}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        setattr(pki, f"{role}_cert", cert_path)
        setattr(pki, f"{role}_key", key_path)
    return pki


# --- running probes ----------------------------------------------------------------


def probe_config(kind: str, target: str, options: dict[str, Any] | None = None,
                 timeout: str = "2s", name: str = "t") -> str:
    probe: dict[str, Any] = {"name": name, "kind": kind, "target": target, "period": "10s",
                             "timeout": timeout}
    if options is not None:
        probe[kind] = options
    return yaml.safe_dump({"probes": [probe]}, sort_keys=False)


def run(kind: str, target: str, options: dict[str, Any] | None = None,
        timeout: str = "2s") -> Result:
    result, _ = run_once(probe_config(kind, target, options, timeout))
    return result


def reading(result: Result, metric: str, **labels: str) -> float | None:
    for r in result.readings:
        if r.metric == metric and dict(r.labels) == labels:
            return r.value
    return None


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    with serving() as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_web(pki: Pki) -> Iterator[LoopbackServer]:
    with serving(tls=pki.server_context()) as server:
        yield server


# --- plain HTTP --------------------------------------------------------------------


def test_200_is_up_with_status_as_code_and_body_length(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/ok")
    assert (result.up, result.code, result.message) == (True, 200, "HTTP 200 OK")
    assert reading(result, CONTENT_LENGTH) == len(OK_BODY)
    assert reading(result, CERT_EXPIRY) is None  # plain http has no certificate


def test_503_is_down_with_unexpected_code(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/unavailable")
    assert (result.up, result.reason, result.code) == (False, "unexpected_code", 503)
    assert result.message == "HTTP 503 Service Unavailable, expected 200-399"
    assert reading(result, CONTENT_LENGTH) == len(b"down for maintenance\n")


@pytest.mark.parametrize("expect, up", [
    ([200, 503], True), ("5xx", True), ("500-502", False), ("2xx, 3xx", False), (503, True),
])
def test_expect_status_takes_codes_classes_and_ranges(web: LoopbackServer, expect: Any,
                                                      up: bool) -> None:
    result = run("http", f"{web.base}/unavailable", {"expect_status": expect})
    assert result.up is up
    assert result.code == 503


def test_slow_server_is_a_timeout_cut_at_the_probe_timeout(web: LoopbackServer) -> None:
    started = time.monotonic()
    result = run("http", f"{web.base}/slow?s=3", timeout="300ms")
    assert (result.up, result.reason, result.code) == (False, "timeout", -1)
    assert result.message == "no response within 0.3s"  # connected: the reply was awaited
    assert time.monotonic() - started < 1.5


def test_refused_port_is_reason_refused() -> None:
    result = run("http", f"http://127.0.0.1:{closed_port()}/ok")
    assert (result.up, result.reason, result.code) == (False, "refused", -1)
    assert result.message.startswith("connection refused by 127.0.0.1:")


def test_redirect_is_followed_unless_told_not_to(web: LoopbackServer) -> None:
    followed = run("http", f"{web.base}/redirect")
    assert (followed.up, followed.code) == (True, 200)
    assert reading(followed, CONTENT_LENGTH) == len(OK_BODY)
    kept = run("http", f"{web.base}/redirect", {"follow_redirects": False})
    assert (kept.up, kept.code) == (True, 302)  # 3xx is in the default 200-399
    strict = run("http", f"{web.base}/redirect", {"follow_redirects": False,
                                                 "expect_status": "2xx"})
    assert (strict.up, strict.reason, strict.code) == (False, "unexpected_code", 302)


def test_redirect_loop_is_unexpected_response(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/loop", {"max_redirects": 3})
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 302)
    assert result.message == "more than 3 redirects, last to /loop"


def test_slow_redirect_chain_stops_once_the_timeout_has_passed(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/drip/10", timeout="400ms")
    assert (result.up, result.reason) == (False, "timeout")
    time.sleep(1.0)  # the worker thread has had time to go on, if it were going to
    hops = [s for s in web.seen if s.path.startswith("/drip/")]
    assert len(hops) <= 4  # 0.15s each: the 3rd ends past 400ms, and no more are asked


def test_body_regex_and_body_not_regex(web: LoopbackServer) -> None:
    assert run("http", f"{web.base}/ok", {"body_regex": ["^hello", "tests\\s*$"]}).up
    missing = run("http", f"{web.base}/ok", {"body_regex": "goodbye"})
    assert (missing.reason, missing.message) == (
        "unexpected_response", "body does not match regex 'goodbye'")
    present = run("http", f"{web.base}/ok", {"body_not_regex": "probe\\w+"})
    assert (present.up, present.reason, present.code) == (False, "unexpected_response", 200)
    assert present.message == "body matches regex 'probe\\\\w+' ('probewatch')"


def test_moc_post_with_true_status_is_up(web: LoopbackServer) -> None:
    message = {"action": "hello", "meta": {"askAbout": "sysinfo", "echoBack": "probewatch"}}
    result = run("http", f"{web.base}/moc/true", {
        "method": "POST", "json": message, "expect": [{"path": "$.status", "equals": True}]})
    assert (result.up, result.code) == (True, 200)
    sent = web.seen[-1]
    assert (sent.method, sent.headers["Content-Type"]) == ("POST", "application/json")
    assert json.loads(sent.body) == message


def test_moc_post_with_false_status_says_which_path_held_what(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/moc/false", {
        "method": "post", "json": {"action": "hello"},
        "expect": [{"path": "$.status", "equals": True}, {"path": "echo", "equals": "hello"}]})
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 200)
    assert result.message == "$.status is false, expected true"


def test_json_expectation_on_a_body_that_is_not_json(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/badjson", {"expect": [{"path": "$.status"}]})
    assert (result.up, result.reason) == (False, "unexpected_response")
    assert result.message.startswith("body is not JSON (Expecting property name enclosed in "
                                     "double quotes at line 1 column 2): ")


def test_body_larger_than_the_limit_fails(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/big?n=5000", {"max_body_bytes": 1000})
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 200)
    assert result.message == "body is larger than max_body_bytes (1000)"


def test_head_and_custom_headers_reach_the_server(web: LoopbackServer) -> None:
    result = run("http", f"{web.base}/headers", {"method": "HEAD",
                                                 "headers": {"X-Probe": "pw", "Accept": "x/y"}})
    assert (result.up, result.code) == (True, 200)
    sent = web.seen[-1]
    assert (sent.method, sent.headers["X-Probe"], sent.headers["Accept"]) == ("HEAD", "pw", "x/y")
    assert sent.headers["User-Agent"].startswith("probewatch/")


def test_basic_auth_password_comes_from_its_file_and_is_never_shown(
        web: LoopbackServer, tmp_path: Path) -> None:
    secret = "s3cret-Pa55"
    (tmp_path / "pw").write_text(secret + "\n")
    web.expected_auth = "Basic " + base64.b64encode(f"probe:{secret}".encode()).decode()
    options = {"basic_auth": {"username": "probe", "password_file": str(tmp_path / "pw")}}
    assert run("http", f"{web.base}/auth", options).up
    (tmp_path / "pw").write_text("rotated\n")  # read on every run: no reload needed
    refused = run("http", f"{web.base}/auth", options)
    assert (refused.up, refused.reason, refused.code) == (False, "unexpected_code", 401)
    spec = parse_config(probe_config("http", f"{web.base}/auth", options), "t.yml").probes[0]
    shown = json.dumps(spec.definition())
    assert str(tmp_path / "pw") in shown and secret not in shown and "rotated" not in shown


def test_bearer_token_comes_from_its_file(web: LoopbackServer, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    web.expected_auth = "Bearer tok-123"
    result = run("http", f"{web.base}/auth", {"bearer_token_file": str(tmp_path / "token")})
    assert (result.up, result.code) == (True, 200)
    spec = parse_config(probe_config("http", f"{web.base}/auth", {
        "bearer_token_file": str(tmp_path / "token")}), "t.yml").probes[0]
    (tmp_path / "token").unlink()  # after the config was loaded
    gone = asyncio.run(once(get_kind("http")(spec)))
    assert (gone.up, gone.reason) == (False, "error")
    assert gone.message == f"cannot read {str(tmp_path / 'token')!r}: No such file or directory"


def test_proxy_receives_the_request(web: LoopbackServer) -> None:
    # The loopback server answers absolute-URI requests itself: a forward proxy
    # that never needs the (unresolvable) origin.
    result = run("http", "http://status.example.invalid/ok", {"proxy": web.base})
    assert (result.up, result.code) == (True, 200)
    assert web.seen[-1].path == "http://status.example.invalid/ok"


def test_https_through_the_proxy_tunnel_keeps_verification_and_cert_expiry(
        web: LoopbackServer, tls_web: LoopbackServer, pki: Pki) -> None:
    target = f"https://localhost:{tls_web.server_address[1]}/ok"
    result = run("http", target, {"proxy": web.base, "tls": {"ca_file": str(pki.ca)}})
    assert (result.up, result.code) == (True, 200)
    assert (web.seen[-1].method, web.seen[-1].path) == (
        "CONNECT", f"localhost:{tls_web.server_address[1]}")
    assert reading(result, CERT_EXPIRY) == pki.not_after.timestamp()


def test_proxy_that_refuses_is_reported_as_the_proxy() -> None:
    result = run("http", "http://status.example.invalid/ok",
                 {"proxy": f"http://127.0.0.1:{closed_port()}"})
    assert (result.up, result.reason) == (False, "refused")
    assert result.message.startswith("proxy: connection refused")


def test_ip_family_picks_the_address_family() -> None:
    with serving("::1") as v6, serving("127.0.0.1") as v4:
        v4_port = v4.server_address[1]
        assert run("http", f"{v6.base}/ok", {"ip_family": "ip6"}).up
        assert run("http", f"http://localhost:{v4_port}/ok", {"ip_family": "ip4"}).up
        # localhost has no IPv6 address here: ip6 must not fall back to 127.0.0.1.
        # A name that does not resolve is unreachable, as for tcp, udp and icmp.
        no_v6 = run("http", f"http://localhost:{v4_port}/ok", {"ip_family": "ip6"})
        assert (no_v6.up, no_v6.reason, no_v6.message) == (
            False, "unreachable", "cannot resolve 'localhost'")
        no_v4 = run("http", f"{v6.base}/ok", {"ip_family": "ip4"})
        assert (no_v4.up, no_v4.reason) == (False, "error"), no_v4.message


# --- HTTPS ------------------------------------------------------------------------


def test_untrusted_certificate_is_reason_tls(tls_web: LoopbackServer) -> None:
    result = run("http", f"https://localhost:{tls_web.server_address[1]}/ok")
    assert (result.up, result.reason, result.code) == (False, "tls", -1)
    assert result.message == "certificate verify failed: unable to get local issuer certificate"


def test_ca_file_verifies_and_cert_expiry_is_the_leaf_not_after(
        tls_web: LoopbackServer, pki: Pki) -> None:
    result = run("http", f"https://localhost:{tls_web.server_address[1]}/ok",
                 {"tls": {"ca_file": str(pki.ca)}})
    assert (result.up, result.code) == (True, 200)
    assert reading(result, CERT_EXPIRY) == pki.not_after.timestamp()
    assert reading(result, CONTENT_LENGTH) == len(OK_BODY)


def test_cert_expiry_is_read_even_without_verification(tls_web: LoopbackServer, pki: Pki) -> None:
    result = run("http", f"{tls_web.base}/ok", {"tls": {"insecure_skip_verify": True}})
    assert (result.up, result.code) == (True, 200)
    assert reading(result, CERT_EXPIRY) == pki.not_after.timestamp()


def test_server_name_sets_the_name_checked_in_the_certificate(
        tls_web: LoopbackServer, pki: Pki) -> None:
    by_ip = run("http", f"{tls_web.base}/ok", {"tls": {"ca_file": str(pki.ca)}})
    assert (by_ip.up, by_ip.reason) == (False, "tls")
    assert by_ip.message == ("certificate verify failed: IP address mismatch, certificate is "
                             "not valid for '127.0.0.1'.")
    named = run("http", f"{tls_web.base}/ok",
                {"tls": {"ca_file": str(pki.ca), "server_name": "status.example.invalid"}})
    assert (named.up, named.code) == (True, 200)


def test_client_certificate_is_presented_when_configured(pki: Pki) -> None:
    with serving(tls=pki.server_context(require_client_cert=True)) as mtls:
        target = f"https://localhost:{mtls.server_address[1]}/ok"
        without = run("http", target, {"tls": {"ca_file": str(pki.ca)}})
        assert (without.up, without.reason) == (False, "tls"), without.message
        with_cert = run("http", target, {"tls": {
            "ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key)}})
        assert (with_cert.up, with_cert.code) == (True, 200)
        assert reading(with_cert, CERT_EXPIRY) == pki.not_after.timestamp()


# --- `probewatch probe` --------------------------------------------------------------


def probe_cli(config_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "probewatch.yml"
    path.write_text(config_text)
    return subprocess.run(probewatch_argv("probe", "t", f"--config.file={path}"),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def test_probe_command_prints_result_and_samples_but_no_secret(
        web: LoopbackServer, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("never-printed\n")
    web.expected_auth = "Basic " + base64.b64encode(b"probe:never-printed").decode()
    target = f"{web.base}/auth"
    proc = probe_cli(probe_config("http", target, {
        "basic_auth": {"username": "probe", "password_file": str(tmp_path / "pw")}}), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:3] == ["result:  up", "code:    200"]
    assert "message: HTTP 200 OK" in lines
    labels = f'probe="t",kind="http",target="{target}"'
    assert f"  probewatch_probe_return_code{{{labels}}} 200" in lines
    length = len(b'{"authorized": true}')
    assert f"  probewatch_probe_http_content_length_bytes{{{labels}}} {length}" in lines
    assert "never-printed" not in proc.stdout + proc.stderr


def test_probe_command_exits_1_with_reason_when_down(web: LoopbackServer, tmp_path: Path) -> None:
    proc = probe_cli(probe_config("http", f"{web.base}/unavailable"), tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:3] == ["result:  down", "code:    503"]
    assert "reason:  unexpected_code" in lines
    assert "message: HTTP 503 Service Unavailable, expected 200-399" in lines


@contextmanager
def close_watcher() -> Iterator[tuple[int, list[float]]]:
    """A server that takes one connection, reads what comes (the request, a TLS hello) and
    notes when the client closes it: (port, [the close's monotonic time]).  The close is
    awaited (up to 5 s) when the block ends."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        closed_after: list[float] = []

        def accept_and_wait() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                while conn.recv(65536):  # request or TLS hello, then nothing until the close
                    pass
                closed_after.append(time.monotonic())

        thread = threading.Thread(target=accept_and_wait, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], closed_after
        finally:
            thread.join(5)


def test_a_run_cut_at_its_timeout_closes_its_connection_at_once() -> None:
    """Nothing keeps working for a probe after its timeout: the server sees the close."""
    with close_watcher() as (port, closed_after):
        started = time.monotonic()
        result = run("http", f"http://127.0.0.1:{port}/never", timeout="300ms")
    assert (result.up, result.reason) == (False, "timeout")
    assert closed_after and closed_after[0] - started < 1.0


# --- what the lean client must get right: framing, bad peers, cancellation -----------


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def raw_reply(*parts: bytes, pause: float = 0.0) -> Iterator[TcpServer]:
    """A server that reads the request head, then sends ``parts`` (``pause`` s apart) and closes."""

    def handler(conn: socket.socket) -> bytes:
        seen = read_head(conn)
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            conn.sendall(part)
        return seen

    server = TcpServer(handler)
    try:
        yield server
    finally:
        server.close()


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
           b"7;ext=1\r\nhello, \r\n", b"6\r\nchunks\r\n0\r\nX-Trailer: yes\r\n\r\n")


def test_chunked_body_arriving_in_pieces_is_decoded() -> None:
    with raw_reply(*CHUNKED, pause=0.05) as server:
        result = run("http", f"http://{server.target}/", {"body_regex": "^hello, chunks$"})
    assert (result.up, result.code) == (True, 200), result.message
    assert reading(result, CONTENT_LENGTH) == len(b"hello, chunks")


def test_chunked_body_past_max_body_bytes_fails() -> None:
    with raw_reply(*CHUNKED) as server:
        result = run("http", f"http://{server.target}/", {"max_body_bytes": 10})
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 200)
    assert result.message == "body is larger than max_body_bytes (10)"


def test_body_delimited_by_the_close_is_read_to_the_end() -> None:
    with raw_reply(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ",
                   b"second part", pause=0.05) as server:
        result = run("http", f"http://{server.target}/", {"body_regex": "first part, second part"})
    assert (result.up, result.code) == (True, 200), result.message
    assert reading(result, CONTENT_LENGTH) == len(b"first part, second part")


def test_interim_100_continue_is_skipped() -> None:
    with raw_reply(b"HTTP/1.1 100 Continue\r\n\r\n",
                   b"HTTP/1.1 204 No Content\r\n\r\n") as server:
        result = run("http", f"http://{server.target}/")
    assert (result.up, result.code, result.message) == (True, 204, "HTTP 204 No Content")


def test_gzip_body_is_decoded_and_its_decoded_size_is_bounded() -> None:
    text = b"compressed status page " * 100
    packed = gzip.compress(text)
    reply = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
             b"Content-Length: %d\r\n\r\n" % len(packed)) + packed
    with raw_reply(reply) as server:
        result = run("http", f"http://{server.target}/", {"body_regex": "^compressed status"})
    assert (result.up, reading(result, CONTENT_LENGTH)) == (True, len(text)), result.message
    assert b"gzip" in server.received[-1]  # Accept-Encoding offered it
    with raw_reply(reply) as server:  # small on the wire, too large once decoded
        bomb = run("http", f"http://{server.target}/", {"max_body_bytes": 1000})
    assert (bomb.up, bomb.reason, bomb.message) == (
        False, "unexpected_response", "body is larger than max_body_bytes (1000)")


@pytest.mark.parametrize("reply, message", [
    ([b"SSH-2.0-OpenSSH_9.6\r\n"], "bad response: not HTTP: b'SSH-2.0-OpenSSH_9.6\\r\\n'"),
    ([b"HTTP/1.1 2OO OK\r\n\r\n"], "bad response: not an HTTP status line: 'HTTP/1.1 2OO OK'"),
    ([b"HTTP/1.1 200 OK\r\nBroken header line\r\n\r\n"],
     "bad response: malformed header line 'Broken header line'"),
    ([b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 70000],
     "bad response: the status line and headers exceed 65536 bytes"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"],
     "broken body: the connection closed with 91 bytes of the Content-Length still to come"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
     "broken body: bad chunk size b'zz'"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"], "bad response: Content-Length 'ten'"),
])
def test_a_peer_that_does_not_speak_http_is_a_clear_failure(reply: list[bytes],
                                                              message: str) -> None:
    with raw_reply(*reply) as server:
        result = run("http", f"http://{server.target}/")
    assert (result.up, result.reason, result.message) == (False, "unexpected_response", message)


def test_a_peer_that_closes_without_answering_is_named() -> None:
    with raw_reply() as server:
        result = run("http", f"http://{server.target}/")
    assert (result.up, result.reason, result.message) == (
        False, "error", "server closed the connection without a response")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_cancelled_run_closes_its_socket_at_once(scheme: str) -> None:
    """The scheduler cancels a run (reload, stop): the peer sees the close right away."""
    with close_watcher() as (port, closed_after):
        spec = parse_config(probe_config("http", f"{scheme}://127.0.0.1:{port}/", timeout="5s",
                                         options={"tls": {"insecure_skip_verify": True}}),
                            "t.yml").probes[0]

        async def cancel_soon() -> float:
            task = asyncio.ensure_future(once(get_kind("http")(spec)))
            await asyncio.sleep(0.3)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return time.monotonic()

        cancelled = asyncio.run(cancel_soon())
    assert closed_after and closed_after[0] - cancelled < 0.5
