"""The one registry of probe kinds, read by config validation and by dispatch.

Built-in kinds are import strings resolved on first use, so a kind whose
optional dependency is missing fails only the configs that use it, with a
message naming the extra to install.  Third-party kinds register through the
``probewatch.probes`` entry point group (``name = "package.module:Class"``).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from .base import Kind

ENTRY_POINT_GROUP = "probewatch.probes"


@dataclass(frozen=True)
class KindEntry:
    import_path: str
    extra: str | None = None  # the pip extra that brings this kind's dependency


BUILTIN: dict[str, KindEntry] = {
    "tcp": KindEntry("probes.tcp:TcpProbe"),
    "command": KindEntry("probes.command:CommandProbe"),
    "http": KindEntry("probes.http:HttpProbe"),
    "json": KindEntry("probes.json_status:JsonProbe"),
    "udp": KindEntry("probes.udp:UdpProbe"),
    "icmp": KindEntry("probes.icmp:IcmpProbe"),
    "sip": KindEntry("probes.sip:SipProbe", extra="sip"),
}


class KindUnavailable(Exception):
    """The kind exists but cannot be loaded here (a missing dependency)."""


_loaded: dict[str, type[Kind]] = {}


@functools.cache
def _entries() -> dict[str, KindEntry]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, KindEntry(ep.value))
    return found


@functools.cache
def _names() -> tuple[str, ...]:
    return tuple(sorted(_entries()))


def kind_names() -> list[str]:
    return list(_names())


def get_kind(name: str) -> type[Kind]:
    """The kind class for ``name``; KeyError if unknown, KindUnavailable if it cannot load."""
    if name in _loaded:
        return _loaded[name]
    entry = _entries()[name]
    module_name, _, attr = entry.import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: pip install 'probewatch[{entry.extra}]'" if entry.extra else ""
        raise KindUnavailable(
            f"kind {name!r} cannot be loaded: {exc.name or exc} is not installed{hint}"
        ) from None
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Kind)):
        raise KindUnavailable(f"kind {name!r}: {entry.import_path} is not a probes.base.Kind subclass")
    _loaded[name] = cls
    return cls


def loaded_kinds() -> list[type[Kind]]:
    """Kind classes already imported (for shutdown hooks)."""
    return list(_loaded.values())
