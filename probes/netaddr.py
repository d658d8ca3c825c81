"""Parsing ``host:port`` targets (IPv6 as ``[addr]:port``)."""

from __future__ import annotations

import ipaddress
import socket


def split_host_port(target: str) -> tuple[str, int]:
    """Return (host, port); raise ValueError with a message fit for a config error."""
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{target!r} is not [ADDRESS]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {target!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{target!r} is not HOST:PORT (IPv6 as [ADDRESS]:PORT)")
        if ":" in host:
            raise ValueError(f"{target!r}: write an IPv6 address in brackets, as [{host}]:{port_text}")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} in {target!r} is not a number from 1 to 65535")
    return host, int(port_text)


def is_ip(host: str) -> bool:
    try:
        # The common case first, at a twentieth of the cost: inet_pton takes exactly
        # the dotted quads ipaddress takes (four decimal parts of 0-255, no leading zeros).
        socket.inet_pton(socket.AF_INET, host)
        return True
    except (OSError, ValueError):
        pass
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def target_problems(target: str) -> list[tuple[str, str]]:
    """``validate`` for kinds whose target is host:port: the config error, if any."""
    try:
        split_host_port(target)
    except ValueError as exc:
        return [("target", str(exc))]
    return []


def join_host_port(host: str, port: int | str) -> str:
    """``host:port``, an IPv6 address in brackets: the inverse of ``split_host_port``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_listen_address(text: str) -> tuple[str, int]:
    """A listen address: HOST:PORT, [V6]:PORT or :PORT (every address); port 0 picks a free one.

    Raise ValueError naming what is wrong; the host comes back without brackets.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:9637 or [::1]:9637)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
