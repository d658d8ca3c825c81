"""TLS client options (probes/tls.py) against a real TLS server on 127.0.0.1 with a CA made here."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probes.tls import TlsOptions, build_ssl_context, ssl_context, ssl_reason

NAME = "tls.probewatch.test"


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # certificate and key in one file
    other_ca: Path  # a CA that signed nothing here


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str,
          usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM
    ca, ca_key = _ca("probewatch test CA")
    server, server_key = _leaf(ca, ca_key, NAME, ExtendedKeyUsageOID.SERVER_AUTH,
                               [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client, client_key = _leaf(ca, ca_key, "probewatch client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    other, _ = _ca("some other CA")
    pki = Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
              d / "client-bundle.pem", d / "other-ca.pem")
    pki.ca.write_bytes(ca.public_bytes(pem))
    pki.other_ca.write_bytes(other.public_bytes(pem))
    pki.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(pki.server_key, server_key)
    pki.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(pki.client_key, client_key)
    pki.client_bundle.write_bytes(client.public_bytes(pem) + pki.client_key.read_bytes())
    return pki


@contextmanager
def tls_server(pki: Pki, require_client_cert: bool = False) -> Iterator[tuple[int, list[str]]]:
    """A TLS server on 127.0.0.1 (port 0) answering each handshake with b"hello";
    yields its port and the subjects of the client certificates it was shown."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    clients: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    if peer:
                        clients.append(dict(x[0] for x in peer["subject"])["commonName"])
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], clients
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def handshake(opts: TlsOptions, port: int, host: str = "127.0.0.1") -> str:
    """Connect as the tcp and http kinds do (SNI: server_name, else the target's host)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ssl_context(opts).wrap_socket(raw, server_hostname=opts.server_name or host) as tls:
        return tls.recv(5).decode()


def refused(opts: TlsOptions, port: int, host: str = "127.0.0.1") -> str:
    with pytest.raises((ssl.SSLError, OSError)) as caught:
        handshake(opts, port, host)
    return ssl_reason(caught.value)


def test_a_server_signed_by_the_ca_file_is_trusted_by_address_and_by_name(pki: Pki) -> None:
    with tls_server(pki) as (port, _):
        assert handshake(TlsOptions(ca_file=str(pki.ca)), port) == "hello"
        assert handshake(TlsOptions(ca_file=str(pki.ca), server_name=NAME), port) == "hello"


def test_a_server_from_another_ca_is_refused_and_the_reason_says_so(pki: Pki) -> None:
    with tls_server(pki) as (port, _):
        reason = refused(TlsOptions(ca_file=str(pki.other_ca)), port)
        assert reason.startswith("certificate verify failed: unable to get local issuer certificate"), reason
        # the system store does not know our CA either
        assert refused(TlsOptions(), port).startswith("certificate verify failed"), reason


def test_a_server_name_the_certificate_does_not_hold_is_refused(pki: Pki) -> None:
    with tls_server(pki) as (port, _):
        reason = refused(TlsOptions(ca_file=str(pki.ca), server_name="other.probewatch.test"), port)
    assert reason.startswith("certificate verify failed: Hostname mismatch"), reason


def test_insecure_skip_verify_accepts_any_certificate(pki: Pki) -> None:
    with tls_server(pki) as (port, _):
        opts = TlsOptions(ca_file=str(pki.other_ca), insecure_skip_verify=True,
                          server_name="other.probewatch.test")
        assert handshake(opts, port) == "hello"


@pytest.mark.parametrize("split", [True, False], ids=["cert_file+key_file", "one bundle file"])
def test_a_client_certificate_is_shown_to_a_server_that_asks(pki: Pki, split: bool) -> None:
    files = (dict(cert_file=str(pki.client_cert), key_file=str(pki.client_key)) if split
             else dict(cert_file=str(pki.client_bundle)))
    with tls_server(pki, require_client_cert=True) as (port, clients):
        assert handshake(TlsOptions(ca_file=str(pki.ca), **files), port) == "hello"
    assert clients == ["probewatch client"]


def test_without_a_client_certificate_a_server_that_asks_refuses(pki: Pki) -> None:
    with tls_server(pki, require_client_cert=True) as (port, clients), pytest.raises((ssl.SSLError, OSError)):
        # TLS 1.3 reports the server's refusal at the first read, not at the handshake
        handshake(TlsOptions(ca_file=str(pki.ca)), port)
    assert clients == []


def test_contexts_are_shared_and_rebuilt_when_a_file_changes(pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.other_ca.read_bytes())
    opts = TlsOptions(ca_file=str(ca))
    first = ssl_context(opts)
    assert ssl_context(TlsOptions(ca_file=str(ca))) is first
    with tls_server(pki) as (port, _):
        assert refused(opts, port).startswith("certificate verify failed")
        # the CA file is renewed on disk: the next handshake uses it, no reload needed
        ca.write_bytes(pki.ca.read_bytes())
        stat = ca.stat()
        os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert ssl_context(opts) is not first
        assert handshake(opts, port) == "hello"


def test_good_options_have_no_problems(pki: Pki) -> None:
    assert TlsOptions(ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                      key_file=str(pki.client_key)).check() == []


def test_options_that_cannot_work_are_named_with_why(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    missing = tmp_path / "missing.pem"
    assert TlsOptions(ca_file=str(missing)).check() == [
        ("ca_file", f"cannot read {str(missing)!r}: No such file or directory")]
    assert TlsOptions(ca_file=str(tmp_path)).check() == [
        ("ca_file", f"cannot read {str(tmp_path)!r}: not a regular file")]
    assert TlsOptions(key_file=str(pki.client_key)).check() == [
        ("key_file", "needs cert_file (the client certificate) as well")]
    problems = TlsOptions(ca_file=str(not_pem)).check()
    assert [key for key, _ in problems] == ["ca_file"]
    assert problems[0][1].startswith("holds no usable CA certificate: "), problems
    # a certificate with the wrong key
    assert TlsOptions(cert_file=str(pki.client_cert), key_file=str(pki.server_key)).check() == [
        ("key_file", "cannot load the client certificate and key: key values mismatch")]
    assert TlsOptions(cert_file=str(not_pem)).check() == [
        ("cert_file", "cannot load the client certificate and key: not PEM data")]


def test_a_fresh_context_for_bad_files_raises_for_the_caller_to_report(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ssl.SSLError) as caught:
        build_ssl_context(TlsOptions(ca_file=str(not_pem)))
    assert ssl_reason(caught.value)
