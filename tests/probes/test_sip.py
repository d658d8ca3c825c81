"""sip kind against real peers on loopback: sipp scenarios, a second pjsua2 process,
sockets that never answer, and the exporter itself stopping with calls in flight.

The pjsua2 endpoint of this test process is shared by every test here, as it is
by every probe of an exporter; it is destroyed once, at the end of the module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import IN_CI, no_sip_reason

if importlib.util.find_spec("pjsua2") is None:  # the optional extra: pip install 'probewatch[sip]'
    if IN_CI and not no_sip_reason():
        raise ImportError("pjsua2 is not installed (CI must have it: .ci/run installs .[sip])")
    pytest.skip(f"pjsua2 is not installed ({no_sip_reason() or 'pip install probewatch[sip]'})",
                allow_module_level=True)

from exporter.config import parse_config
from probes import runner, sip
from probes.base import Result
from tests.exporter.exporter_process import serve
from tests.probes.run import run_once
from tests.support import ROOT, free_port, process, require_binary, wait_for

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sip_scenarios"
FIXTURES = ROOT / "tests" / "fixtures"
UDP = socket.SOCK_DGRAM


def config(target: str, options: str = "", timeout: str = "2s", name: str = "pbx") -> str:
    block = f"\n    sip: {{{options}}}" if options else ""
    return f"""
probes:
  - name: {name}
    kind: sip
    target: "{target}"
    period: 10s
    timeout: {timeout}{block}
"""


@pytest.fixture(scope="module", autouse=True)
def _endpoint_destroyed_at_the_end() -> Iterator[None]:
    yield
    started = time.monotonic()
    sip.SipProbe.shutdown()
    assert time.monotonic() - started < 2.0


def udp_port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, UDP) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Sipp:
    proc: subprocess.Popen[str]
    port: int
    messages: Path

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def received(self, method: str) -> str:
        """The first ``method`` request sipp logged, start line to end of body."""
        text = self.messages.read_text(errors="replace") if self.messages.exists() else ""
        found = re.search(rf"^{method} sip:.*?(?=^-{{5,}}|\Z)", text, re.MULTILINE | re.DOTALL)
        return found.group(0) if found else ""


@contextmanager
def sipp(tmp_path: Path, scenario: str | None, *extra: str) -> Iterator[Sipp]:
    """sipp as a UAS on a port chosen now: built-in 'uas' or a file from sip_scenarios/."""
    binary = require_binary("sipp")
    port = free_port(socket.AF_INET, UDP)
    what = ["-sn", "uas"] if scenario is None else ["-sf", str(SCENARIOS / scenario)]
    messages = tmp_path / f"sipp-{port}-messages.log"
    argv = [binary, *what, "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_port(socket.AF_INET, UDP)), "-cp", str(free_port(socket.AF_INET, UDP)),
            "-nostdin", "-trace_msg", "-message_file", str(messages), *extra]
    screen = tmp_path / f"sipp-{port}.out"
    with screen.open("w") as out, process(argv, stdout=out, stderr=subprocess.STDOUT) as proc:
        wait_for(lambda: proc.poll() is not None or udp_port_taken("127.0.0.1", port),
                 timeout=10, what="sipp to listen")
        assert proc.poll() is None, screen.read_text()
        yield Sipp(proc, port, messages)


@contextmanager
def pjsua_peer(address: str = "127.0.0.1", transport: str = "udp",
               *extra: str) -> Iterator[int]:
    """tests/probes/sip_peer.py: a second pjsua2 process; yields its port."""
    argv = [sys.executable, str(HERE / "sip_peer.py"), "--address", address,
            "--transport", transport, *extra]
    with process(argv, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        port = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening "):
                port = int(line.split()[1])
                break
        assert port, "sip_peer.py did not start"
        yield port


@contextmanager
def silent_udp(host: str = "127.0.0.1") -> Iterator[int]:
    """A bound UDP socket nobody reads: requests to it are never answered."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, UDP) as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


def run_together(specs: list[Any]) -> list[Result]:
    """Run every spec once, all at the same time, on one event loop."""
    async def go() -> list[Result]:
        async def one(spec: Any) -> Result:
            result, _, _ = await runner.run_once(sip.SipProbe(spec), spec)
            return result

        return await asyncio.gather(*(one(s) for s in specs))

    return asyncio.run(go())


def endpoint_calls() -> int:
    endpoint = sip._ENDPOINT
    return len(endpoint._calls.placed) if endpoint is not None else 0


# --- OPTIONS ---------------------------------------------------------------------------


def test_options_answered_200_by_sipp_is_up(tmp_path: Path) -> None:
    with sipp(tmp_path, "options-200.xml") as peer:
        result, latency = run_once(config(peer.uri))
    assert (result.up, result.code) == (True, 200), result.message
    assert result.message == f"200 OK to OPTIONS from {peer.uri}"
    assert latency < 1.0


@pytest.mark.parametrize(("address", "transport"),
                         [("127.0.0.1", "udp"), ("127.0.0.1", "tcp"), ("::1", "udp")])
def test_options_answered_by_a_second_pjsua2_process(address: str, transport: str) -> None:
    with pjsua_peer(address, transport) as port:
        host = f"[{address}]" if ":" in address else address
        suffix = ";transport=tcp" if transport == "tcp" else ""
        result, _ = run_once(config(f"sip:{host}:{port}{suffix}"))
    assert (result.up, result.code) == (True, 200), result.message


def test_local_port_is_the_port_requests_come_from(tmp_path: Path) -> None:
    local = free_port(socket.AF_INET, UDP)
    with sipp(tmp_path, "options-200.xml") as peer:
        result, _ = run_once(config(peer.uri, f"local_port: {local}"))
        request = peer.received("OPTIONS")
    assert (result.up, result.code) == (True, 200), result.message
    assert f"Via: SIP/2.0/UDP 127.0.0.1:{local};" in request


def test_local_port_in_use_is_an_error_naming_it() -> None:
    with socket.socket(socket.AF_INET, UDP) as taken:
        taken.bind(("127.0.0.1", 0))
        local = taken.getsockname()[1]
        peer = free_port(socket.AF_INET, UDP)
        result, _ = run_once(config(f"sip:127.0.0.1:{peer}", f"local_port: {local}"))
    assert (result.up, result.reason) == (False, "error")
    assert result.message == (f"OPTIONS to sip:127.0.0.1:{peer}: cannot open a SIP udp transport"
                              f" on 127.0.0.1:{local}: Address already in use")


def test_transport_option_adds_the_uri_parameter() -> None:
    with pjsua_peer("127.0.0.1", "tcp") as port:
        result, _ = run_once(config(f"sip:127.0.0.1:{port}", "transport: tcp"))
    assert (result.up, result.code) == (True, 200), result.message


def test_many_concurrent_probes_go_through_one_worker_thread(tmp_path: Path) -> None:
    with pjsua_peer() as port:
        template = parse_config(config(f"sip:127.0.0.1:{port}"), "t.yml").probes[0]
        specs = [dataclasses.replace(template, name=f"pbx{i}") for i in range(100)]
        results = run_together(specs)
    assert [r.code for r in results] == [200] * 100
    assert [t.name for t in threading.enumerate()].count("pjsua2") == 1


def test_options_never_answered_is_a_timeout_reported_by_the_probe() -> None:
    with silent_udp() as port:
        result, latency = run_once(config(f"sip:127.0.0.1:{port}", timeout="1s"))
    assert (result.up, result.code, result.reason) == (False, -1, "timeout")
    assert result.message == f"no answer to OPTIONS from sip:127.0.0.1:{port} within 1s"
    assert 1.0 <= latency < 1.5  # cut at the probe's timeout, which the scheduler alone owns


def test_tcp_connection_refused() -> None:
    port = free_port()  # nothing listens there any more
    result, _ = run_once(config(f"sip:127.0.0.1:{port};transport=tcp"))
    assert (result.up, result.code, result.reason) == (False, -1, "refused")
    assert "Connection refused" in result.message


@pytest.mark.parametrize(("password", "up", "code", "reason"), [
    ("right-password", True, 200, ""),
    ("wrong-password", False, 403, "auth"),
    (None, False, 401, "auth"),
])
def test_options_behind_a_digest_challenge(tmp_path: Path, password: str | None, up: bool,
                                           code: int, reason: str) -> None:
    options = ""
    if password is not None:
        secret = tmp_path / "password"
        secret.write_text(password + "\n")
        options = f"auth: {{username: alice, password_file: {secret}}}"
    with sipp(tmp_path, "options-401.xml") as peer:
        result, _ = run_once(config(peer.uri, options))
    assert (result.up, result.code, result.reason) == (up, code, reason), result.message
    if password is None:
        assert result.message == f"{peer.uri} asks for credentials (401 Unauthorized); set sip.auth"
    elif not up:
        assert result.message == f"{peer.uri} refused the credentials of 'alice' (403 Forbidden)"


def test_credentials_for_another_realm_are_not_sent(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("right-password")
    with sipp(tmp_path, "options-401.xml") as peer:
        result, _ = run_once(config(
            peer.uri, f"auth: {{username: alice, password_file: {secret}, realm: other.test}}"))
    assert (result.up, result.code, result.reason) == (False, 401, "auth")
    assert "'probewatch.test'" in result.message and "'other.test'" in result.message


# --- INVITE -------------------------------------------------------------------------------


def test_invite_to_sipp_uas_is_confirmed_then_hung_up(tmp_path: Path) -> None:
    with sipp(tmp_path, None, "-m", "1") as peer:
        result, _ = run_once(config(peer.uri, "method: INVITE"))
        assert (result.up, result.code) == (True, 200), result.message
        assert result.message == f"call to {peer.uri} reached CONFIRMED (200 OK); hung up"
        # hung up at once: sipp's uas scenario gets our BYE right after the ACK
        wait_for(lambda: peer.received("BYE"), timeout=5, what="sipp to receive the BYE")
        invite = peer.received("INVITE")
    assert "c=IN IP4 127.0.0.1" in invite
    addresses = set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", invite))
    assert addresses == {"127.0.0.1"}, invite  # SIP and media advertise loopback only


def test_invite_success_state_early_is_up_on_ringing(tmp_path: Path) -> None:
    with sipp(tmp_path, None) as peer:
        result, _ = run_once(config(peer.uri, "method: INVITE, success_state: EARLY"))
    assert (result.up, result.code) == (True, 180), result.message
    assert result.message == f"call to {peer.uri} reached EARLY (180 Ringing); hung up"
    wait_for(lambda: endpoint_calls() == 0, timeout=5, what="the call to be released")


@pytest.mark.parametrize(("scenario", "code", "text"), [
    ("invite-486.xml", 486, "Busy Here"),
    ("invite-503.xml", 503, "Service Unavailable"),
])
def test_invite_rejected_is_an_unexpected_code(tmp_path: Path, scenario: str, code: int,
                                               text: str) -> None:
    with sipp(tmp_path, scenario, "-m", "1") as peer:
        result, _ = run_once(config(peer.uri, "method: INVITE"))
        assert peer.proc.wait(10) == 0  # it got its ACK
    assert (result.up, result.code, result.reason) == (False, code, "unexpected_code")
    assert result.message == (f"{code} {text} to INVITE from {peer.uri};"
                              " the call reached CALLING")


def test_invite_never_answered_times_out_and_the_call_is_released() -> None:
    with silent_udp() as port:
        result, latency = run_once(config(f"sip:127.0.0.1:{port}", "method: INVITE",
                                          timeout="1s"))
        assert (result.up, result.code, result.reason) == (False, -1, "timeout")
        assert result.message == (f"call to sip:127.0.0.1:{port} reached CALLING, not"
                                  " CONFIRMED, within 1s")
        assert latency < 1.5
        wait_for(lambda: endpoint_calls() == 0, timeout=5, what="the call to be released")


@pytest.mark.parametrize(("password", "up", "code"), [
    ("right-password", True, 200),
    ("wrong-password", False, 403),
])
def test_invite_behind_a_digest_challenge(tmp_path: Path, password: str, up: bool,
                                          code: int) -> None:
    secret = tmp_path / "password"
    secret.write_text(password)
    with sipp(tmp_path, "invite-401.xml", "-m", "1") as peer:
        result, _ = run_once(config(
            peer.uri, f"method: INVITE, auth: {{username: alice, password_file: {secret}}}"))
        assert peer.proc.wait(10) == 0
    assert (result.up, result.code) == (up, code), result.message
    assert result.reason == ("" if up else "auth")


# --- TLS ----------------------------------------------------------------------------------


def write_certificate(directory: Path, name: str, san: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for ``san`` (an IP address or a DNS name)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"probewatch test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        alt = x509.DNSName(san)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize(("san", "options", "up", "reason"), [
    ("127.0.0.1", "tls: {{ca_file: {cert}}}", True, ""),
    ("127.0.0.1", "", False, "tls"),  # the system's CAs do not know our test CA
    ("other.example.invalid", "tls: {{ca_file: {cert}}}", False, "tls"),  # the name does not match
    ("other.example.invalid", "tls: {{insecure_skip_verify: true}}", True, ""),
])
def test_sips_target_verifies_the_peer_certificate(tmp_path: Path, san: str, options: str,
                                                   up: bool, reason: str) -> None:
    cert, key = write_certificate(tmp_path, "peer", san)
    with pjsua_peer("127.0.0.1", "tls", "--cert", str(cert), "--key", str(key)) as port:
        result, _ = run_once(config(f"sips:127.0.0.1:{port}", options.format(cert=cert)))
    assert (result.up, result.reason) == (up, reason), result.message
    if not up:
        assert result.message == (f"sips:127.0.0.1:{port}: SSL certificate verification error"
                                  " (PJSIP_TLS_ECERTVERIF)")


# --- config ---------------------------------------------------------------------------------

SIP_FIXTURES = sorted(FIXTURES.glob("invalid-sip-*.yml"))


def test_fixtures_cover_the_sip_checks() -> None:
    """Each bad sip config has its fixture; tests/exporter/test_config.py checks every
    invalid-*.yml against its '# expect:' lines."""
    names = {p.stem.removeprefix("invalid-sip-") for p in SIP_FIXTURES}
    assert {"target", "transport", "success-state", "local-port", "log-level", "password-file",
            "method", "tls-only", "uri-transport", "invite-ipv6"} <= names


def test_missing_pjsua2_fails_the_config_check_naming_the_extra(tmp_path: Path) -> None:
    path = tmp_path / "sip.yml"
    path.write_text(config(f"sip:127.0.0.1:{free_port(socket.AF_INET, UDP)}"))
    # None in sys.modules makes `import pjsua2` fail as if the wheel were not installed
    code = ("import sys; sys.modules['pjsua2'] = None; from exporter.cli import main;"
            f" sys.exit(main(['check', '--config.file={path}']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}:4: probes[0] (pbx): kind: kind 'sip' cannot be loaded: pjsua2 is not installed;"
        " install it with: pip install 'probewatch[sip]'",
        "1 problem(s) found",
    ]


# --- the exporter, stopping -----------------------------------------------------------------


def test_exporter_with_sip_probes_stops_cleanly_within_two_seconds(tmp_path: Path) -> None:
    """Calls and OPTIONS in flight at SIGTERM: the process ends, promptly and without abort."""
    with pjsua_peer() as port, silent_udp() as silent:
        path = tmp_path / "probewatch.yml"
        path.write_text(f"""
probes:
  - {{name: answered, kind: sip, target: "sip:127.0.0.1:{port}", period: 1s, timeout: 900ms,
     sip: {{log_level: 4}}}}
  - {{name: ringing, kind: sip, target: "sip:127.0.0.1:{silent}", period: 1s, timeout: 900ms,
     sip: {{method: INVITE}}}}
  - {{name: unanswered, kind: sip, target: "sip:127.0.0.1:{silent}", period: 1s, timeout: 900ms}}
""")
        log = tmp_path / "probewatch.log"
        with serve(path, "--log.level=debug", f"--log.file={log}") as running:
            wait_for(lambda: running.value("probewatch_probe_runs_total", probe="unanswered"),
                     timeout=15, what="the silent peer's probe to have run")
            assert running.value("probewatch_probe_up", probe="answered") == 1
            assert running.value("probewatch_probe_return_code", probe="answered") == 200
            time.sleep(0.3)  # let the next runs start: a call and an OPTIONS are in flight
            started = time.monotonic()
            os.kill(running.proc.pid, signal.SIGTERM)
            code = running.proc.wait(5)
            took = time.monotonic() - started
            output = running.proc.stdout.read() if running.proc.stdout else ""
    text = log.read_text()
    assert code == 0, output + text
    assert took < 2.0
    for bad in ("Assertion", "Traceback", "Segmentation", "Aborted"):
        assert bad not in output + text
    assert "logger=probewatch.sip" in text  # pjsip's lines come through Python logging
    assert "pjsip_level=4" in text
    assert "pjlib" not in output  # nothing of pjsip on stdout


def test_endpoint_can_be_started_again_after_shutdown(tmp_path: Path) -> None:
    with sipp(tmp_path, "options-200.xml") as peer:
        sip.SipProbe.shutdown()
        result, _ = run_once(config(peer.uri))
    assert (result.up, result.code) == (True, 200), result.message


def test_stop_is_safe_when_nothing_started() -> None:
    endpoint = sip.SipEndpoint()
    assert endpoint.stop() is True


def test_more_calls_than_pjsua_allows_wait_for_a_free_slot(tmp_path: Path) -> None:
    """pjsua places only a few calls at once (4 in the wheel); the rest wait, none fails."""
    with sipp(tmp_path, None) as peer:
        template = parse_config(config(peer.uri, "method: INVITE", timeout="5s"),
                                "t.yml").probes[0]
        specs = [dataclasses.replace(template, name=f"call{i}") for i in range(40)]  # 10x the wheel's 4
        results = run_together(specs)
        assert [r.message for r in results if not r.up] == [], sum(r.up for r in results)
        wait_for(lambda: endpoint_calls() == 0, timeout=5, what="every call to be released")


def test_a_burst_of_calls_refused_at_once_leaves_the_process_alive(tmp_path: Path) -> None:
    """Each call opens two media sockets that pjlib frees only 500 ms after the call ends; 40
    calls refused with 486 at once used to fill pjlib's socket table, an assertion that
    aborted the whole process (pj_ioqueue_register_sock2).  They are paced now."""
    with sipp(tmp_path, "invite-486.xml") as peer:
        template = parse_config(config(peer.uri, "method: INVITE", timeout="9s"),
                                "t.yml").probes[0]
        specs = [dataclasses.replace(template, name=f"busy{i}") for i in range(40)]
        results = run_together(specs)
        wait_for(lambda: endpoint_calls() == 0, timeout=5, what="every call to be released")
    assert {(r.up, r.code, r.reason) for r in results} == {(False, 486, "unexpected_code")}, \
        sorted({r.message for r in results})
