"""host:port targets (probes/netaddr.py): what the tcp and udp kinds accept and refuse."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from exporter.config import ConfigError, parse_config
from probes.netaddr import is_ip, split_host_port, target_problems


@pytest.mark.parametrize(("target", "expected"), [
    ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:1", ("::1", 1)),
    ("[::ffff:127.0.0.1]:8080", ("::ffff:127.0.0.1", 8080)),
    ("db.internal.example:5432", ("db.internal.example", 5432)),
])
def test_host_and_port_come_apart(target: str, expected: tuple[str, int]) -> None:
    assert split_host_port(target) == expected


@pytest.mark.parametrize(("target", "message"), [
    ("127.0.0.1", "'127.0.0.1' is not HOST:PORT (IPv6 as [ADDRESS]:PORT)"),
    (":80", "':80' is not HOST:PORT (IPv6 as [ADDRESS]:PORT)"),
    ("::1:80", "'::1:80': write an IPv6 address in brackets, as [::1]:80"),
    ("[::1]", "'[::1]' is not [ADDRESS]:PORT"),
    ("[::1]80", "'[::1]80' is not [ADDRESS]:PORT"),
    ("[::1:80", "'[::1:80' is not [ADDRESS]:PORT"),
    ("[db.example]:80", "'db.example' in '[db.example]:80' is not an IPv6 address"),
    ("host:0", "port '0' in 'host:0' is not a number from 1 to 65535"),
    ("host:65536", "port '65536' in 'host:65536' is not a number from 1 to 65535"),
    ("[::1]:0", "port '0' in '[::1]:0' is not a number from 1 to 65535"),
    ("host:-1", "port '-1' in 'host:-1' is not a number from 1 to 65535"),
    ("host:", "port '' in 'host:' is not a number from 1 to 65535"),
    ("host:http", "port 'http' in 'host:http' is not a number from 1 to 65535"),
    ("host: 80", "port ' 80' in 'host: 80' is not a number from 1 to 65535"),
    # digits Python counts as digits but a port never has: refused, not read as 80 or a traceback
    ("host:\u0668\u0660", "port '\u0668\u0660' in 'host:\u0668\u0660' is not a number from 1 to 65535"),
    ("host:\u00b2", "port '\u00b2' in 'host:\u00b2' is not a number from 1 to 65535"),
])
def test_a_bad_target_says_what_is_wrong_with_it(target: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        split_host_port(target)
    assert str(caught.value) == message
    assert target_problems(target) == [("target", message)]


def test_a_good_target_has_no_problems() -> None:
    assert target_problems("[::1]:9") == []


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_the_config_error_names_file_line_probe_and_target(kind: str) -> None:
    extra = ", udp: {send: ping}" if kind == "udp" else ""
    text = f"probes:\n  - {{name: x, kind: {kind}, target: '::1:80'{extra}}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yml")
    assert str(caught.value) == ("t.yml:2: probes[0] (x): target: '::1:80': write an IPv6"
                                 " address in brackets, as [::1]:80")


def test_a_bracketed_ipv6_target_reaches_a_real_listener_on_ipv6_loopback() -> None:
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        host, port = split_host_port(f"[::1]:{server.getsockname()[1]}")
        with socket.create_connection((host, port), timeout=2):
            conn, peer = server.accept()
            conn.close()
    assert peer[0] == "::1"


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", False), ("[::1]", False),
    ("256.0.0.1", False), ("", False),
])
def test_is_ip_tells_addresses_from_names(host: str, expected: bool) -> None:
    assert is_ip(host) is expected


@pytest.mark.parametrize("host", [
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "00.0.0.0", "1.2.3",
    "1.2.3.4.5", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "1.2.3.4\x00", "1.2.3.-4", "0x1.2.3.4", "1..2.3",
    "\u0661.\u0662.\u0663.\u0664", "1.2.3.4/32", "1.2.3.4\ud800", "::1", "fe80::1%eth0", "localhost", ""])
def test_is_ip_agrees_with_ipaddress(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        expected = True
    except ValueError:
        expected = False
    assert is_ip(host) is expected
