"""Where an http hop connects: an IP literal as written, a name resolved on the http kind's
own threads (``probes.base.resolve``), in the probe's ``ip_family``."""

from __future__ import annotations

import socket

from .base import resolve
from .http_failures import TransportError

_FAMILIES = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}
_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


async def addresses_of(host: str, port: int, ip_family: str,
                       via: str) -> list[tuple[int, tuple[str, int]]]:
    """Where to connect: an IP literal as written, a name resolved on the kind's threads."""
    want = _FAMILIES.get(ip_family, socket.AF_UNSPEC)
    literal = _literal_family(host)
    if literal:
        if want not in (socket.AF_UNSPEC, literal):
            raise TransportError("error", f"{via}{host} is not an {_FAMILY_NAMES[want]} address "
                                          f"(ip_family: {ip_family})")
        return [(literal, (host, port))]
    try:
        infos = await resolve("http", host, port, want, socket.SOCK_STREAM)
    except socket.gaierror:
        raise TransportError("unreachable", f"{via}cannot resolve {host!r}") from None
    out = [(fam, (str(a[0]), int(a[1]))) for fam, _, _, _, a in infos
           if fam in (socket.AF_INET, socket.AF_INET6)]
    if not out:
        raise TransportError("unreachable", f"{via}cannot resolve {host!r}")
    return out


def _literal_family(host: str) -> int:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return 0
