"""One mapping from a socket error to a failure reason, so every kind names the same failure alike.

The message stays each kind's own (it names what the kind was doing); the reason
(probewatch_probe_failure_info{reason}) comes from here.
"""

from __future__ import annotations

import errno
import socket

# The network or host cannot be reached from here: no route, no such local address, link down.
UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN})


def os_error_reason(exc: OSError) -> str:
    """``unreachable`` (name not resolved, no route), ``refused``, or ``error`` for the rest."""
    if isinstance(exc, socket.gaierror):
        return "unreachable"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "unreachable" if exc.errno in UNREACHABLE_ERRNOS else "error"
