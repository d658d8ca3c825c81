"""How an http run's failures on the way are told: ``TransportError`` (a failure reason and a
message) and ``TooLarge``, and the messages for a refused, unreachable or closed connection.

Shared by the plain and TLS exchanges (probes/http_plain.py, probes/http_tls.py).
"""

from __future__ import annotations

from .base import truncate
from .oserrors import UNREACHABLE_ERRNOS


class TransportError(Exception):
    """The run failed on the way: ``reason`` is the failure reason, ``code`` the status if any."""

    def __init__(self, reason: str, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.reason, self.message, self.code = reason, truncate(message), code


class TooLarge(Exception):
    """The body is longer than max_body_bytes (status ``code``, the server's certificate)."""

    def __init__(self, code: int, peer_cert: bytes | None) -> None:
        super().__init__(code)
        self.code, self.peer_cert = code, peer_cert


def closed_early(tls: bool) -> TransportError:
    if tls:
        # A TLS 1.3 server refusing the client certificate sends its alert after
        # the client finished the handshake: alert and reset race.
        return TransportError("tls", "the server closed the TLS connection before answering "
                                     "(a client certificate required or refused?)")
    return TransportError("error", "server closed the connection without a response")


def os_failure(exc: OSError, via: str, host: str, port: int) -> TransportError:
    peer = f" by {host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        return TransportError("refused", f"{via}connection refused{peer}")
    if exc.errno in UNREACHABLE_ERRNOS:
        return TransportError("unreachable", f"{via}{exc.strerror or exc}{peer}")
    if isinstance(exc, TimeoutError):
        return TransportError("timeout", f"{via}timed out{peer}")
    return TransportError("error", f"{via}{exc.strerror or exc}{peer}")
