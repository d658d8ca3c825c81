"""tcp kind against real sockets on loopback."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probes.run import run_once
from tests.probes.servers import TcpServer, closed_port, read_all
from tests.support import self_signed_certificate


def config(target: str, block: str = "", timeout: str = "1s") -> str:
    return (f"probes:\n- name: t\n  kind: tcp\n  target: '{target}'\n  timeout: {timeout}\n"
            f"  period: 5s\n" + (f"  tcp: {block}\n" if block else ""))


@pytest.fixture
def greeter():
    def handler(conn: socket.socket) -> bytes:
        conn.sendall(b"+OK POP3 server ready\r\n")
        return read_all(conn)

    server = TcpServer(handler)
    yield server
    server.close()


def test_plain_connect_is_up(greeter: TcpServer) -> None:
    result, _ = run_once(config(greeter.target))
    assert result.up and result.code == 0


def test_refused_is_down_with_reason_refused() -> None:
    result, latency = run_once(config(f"127.0.0.1:{closed_port()}"))
    assert not result.up
    assert (result.reason, result.code) == ("refused", -1)
    assert "refused" in result.message
    assert latency < 1


def test_greeting_matches_literal_expect_and_bye_is_sent(greeter: TcpServer) -> None:
    result, _ = run_once(config(greeter.target, r'{expect: "+OK POP3", bye: "QUIT\r\n"}'))
    assert result.up, result.message
    for _ in range(50):
        if greeter.received:
            break
        time.sleep(0.02)
    assert greeter.received == [b"QUIT\r\n"]


def test_send_expect_bye_exchange_seen_by_the_server() -> None:
    def handler(conn: socket.socket) -> bytes:
        got = b""
        while b"\r\n\r\n" not in got:
            got += conn.recv(1024)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return got + read_all(conn)

    server = TcpServer(handler)
    try:
        result, _ = run_once(config(
            server.target,
            r'{send: "GET / HTTP/1.0\r\n\r\n", expect: {regex: "^HTTP/1\\.1 200"}, bye: "bye\n"}'))
        assert result.up, result.message
        for _ in range(50):
            if server.received:
                break
            time.sleep(0.02)
        assert server.received == [b"GET / HTTP/1.0\r\n\r\nbye\n"]
    finally:
        server.close()


def says_and_closes(reply: bytes) -> TcpServer:
    """A server that sends ``reply`` to each connection, then closes it."""
    def handler(conn: socket.socket) -> bytes:
        conn.sendall(reply)
        conn.close()
        return b""

    return TcpServer(handler)


def test_wrong_reply_is_unexpected_response_and_says_what_came(greeter: TcpServer) -> None:
    server = says_and_closes(b"-ERR go away\r\n")
    try:
        result, _ = run_once(config(server.target, '{expect: "+OK"}'))
    finally:
        server.close()
    assert not result.up
    assert result.reason == "unexpected_response"
    assert "'+OK'" in result.message and "-ERR go away" in result.message


def test_silent_server_times_out_at_the_probe_timeout() -> None:
    server = TcpServer(lambda conn: read_all(conn, 3))
    try:
        result, latency = run_once(config(server.target, '{expect: "hello"}', timeout="300ms"))
    finally:
        server.close()
    assert not result.up and result.reason == "timeout"
    assert 0.29 < latency < 1.0


def test_ipv6_loopback(greeter: TcpServer) -> None:
    try:
        server = TcpServer(lambda conn: b"", family=socket.AF_INET6)
    except OSError:
        pytest.skip("IPv6 loopback (::1) is not configured on this machine")
    try:
        result, _ = run_once(config(server.target))
    finally:
        server.close()
    assert result.up, result.message


def test_tls_handshake_failure_is_reason_tls(greeter: TcpServer) -> None:
    # greeter speaks plain text, so a TLS client handshake cannot succeed.
    result, _ = run_once(config(greeter.target, "{tls: {server_name: localhost}}"))
    assert not result.up
    assert result.reason == "tls"


@contextlib.contextmanager
def tls_greeting_server(directory: Path, *, client_certificate: bool = False,
                        max_version: ssl.TLSVersion | None = None) -> Iterator[tuple[TcpServer, Path, Path]]:
    """A server that greets like IMAP over TLS, with a fresh self-signed certificate: (server,
    cert, key).  ``client_certificate``: it asks for one, and trusts its own certificate."""
    cert, key = self_signed_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cert) if client_certificate else None)
    context.load_cert_chain(cert, key)
    if max_version is not None:
        context.maximum_version = max_version
    if client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED

    def handler(conn: socket.socket) -> bytes:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"* OK IMAP4 ready\r\n")
                return read_all(tls)
        except (ssl.SSLError, OSError):
            return b""

    server = TcpServer(handler)
    try:
        yield server, cert, key
    finally:
        server.close()


@pytest.fixture
def tls_greeter(tmp_path):
    with tls_greeting_server(tmp_path) as (server, cert, _):
        yield server, cert


def test_tls_verified_against_the_given_ca(tls_greeter) -> None:
    server, cert = tls_greeter
    result, _ = run_once(config(server.target, f'{{tls: {{ca_file: "{cert}"}}, expect: "* OK"}}'))
    assert result.up, result.message


def test_tls_unknown_issuer_fails_unless_verification_is_skipped(tls_greeter) -> None:
    server, _ = tls_greeter
    result, _ = run_once(config(server.target, "{tls: {}}"))
    assert (result.up, result.reason) == (False, "tls")
    assert "certificate verify failed" in result.message
    result, _ = run_once(config(server.target, '{tls: {insecure_skip_verify: true}, expect: "* OK"}'))
    assert result.up, result.message


@pytest.fixture
def tls12_greeter(tmp_path):
    """A TLS server that speaks TLS 1.2 at most, and asks for a client certificate it trusts."""
    with tls_greeting_server(tmp_path, client_certificate=True, max_version=ssl.TLSVersion.TLSv1_2) as found:
        yield found


def test_tls_block_client_certificate_and_min_version(tls12_greeter) -> None:
    """The tls block is http's: cert_file/key_file identify the client, min_version bounds the version."""
    server, cert, key = tls12_greeter
    block = f'ca_file: "{cert}", cert_file: "{cert}", key_file: "{key}"'
    result, _ = run_once(config(server.target, f'{{tls: {{{block}}}, expect: "* OK"}}'))
    assert result.up, result.message
    result, _ = run_once(config(server.target, f'{{tls: {{{block}, min_version: "1.3"}}, expect: "* OK"}}'))
    assert (result.up, result.reason) == (False, "tls"), result.message
    result, _ = run_once(config(server.target, f'{{tls: {{ca_file: "{cert}"}}, expect: "* OK"}}'))
    assert not result.up, "the server asks for a client certificate"


def test_expect_list_items_are_judged_in_order_on_the_reply() -> None:
    server = says_and_closes(b'{"state": "ok", "load": 9}\n')
    try:
        ok, _ = run_once(config(server.target, '{expect: [{text: ok}, {path: $.load, max: 10}]}'))
        over, _ = run_once(config(server.target, '{expect: [{regex: "^\\\\{"}, {path: $.load, max: 4}]}'))
        banned, _ = run_once(config(server.target, '{expect: [{not_regex: "load"}]}'))
    finally:
        server.close()
    assert ok.up and ok.message.endswith("; reply met 2 expectations"), ok.message
    assert (over.reason, over.message) == ("unexpected_response",
                                           "$.load is 9, expected at most 4 (peer closed)")
    assert banned.message == "reply matches regex 'load' ('load') (peer closed)"


def test_host_port_helpers_round_trip() -> None:
    from probes.netaddr import join_host_port, split_host_port, split_listen_address

    for host, port in (("127.0.0.1", 25), ("::1", 993), ("mail.example.invalid", 110)):
        assert split_host_port(join_host_port(host, port)) == (host, port)
    assert split_listen_address(":9637") == ("", 9637)
    assert split_listen_address("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        split_listen_address("127.0.0.1")
