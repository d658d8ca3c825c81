"""The one registry of probe kinds, read by config validation and by dispatch.

Built-in kinds are import strings resolved on first use, so a kind whose
optional dependency is missing fails only the configs that use it, with a
message naming the extra to install.  Third-party kinds register through the
``probewatch.probes`` entry point group (``name = "package.module:Class"``);
code (a plugin loader, the tests) registers with ``register`` / ``registered``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
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
_registered: dict[str, KindEntry] = {}  # by register(); these win over built-ins and entry points


@functools.cache
def _entries() -> dict[str, KindEntry]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, KindEntry(ep.value))
    return found


def _entry(name: str) -> KindEntry:
    return _registered[name] if name in _registered else _entries()[name]


def kind_names() -> list[str]:
    return sorted({*_entries(), *_registered})


def register(name: str, kind: str | type[Kind], extra: str | None = None) -> None:
    """Make ``name`` a kind: an import string ``"module:Class"`` (loaded on first use) or
    the class itself.  Replaces a kind of that name (built-in or entry point) until
    ``unregister(name)``; ``extra`` is the pip extra named when the import fails."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a kind name must be a non-empty string, not {name!r}")
    if isinstance(kind, str):
        if kind.count(":") != 1 or not all(kind.partition(":")[::2]):
            raise ValueError(f"kind {name!r}: {kind!r} is not an import path 'module:Class'")
        _registered[name] = KindEntry(kind, extra)
        _loaded.pop(name, None)
    else:
        if not (isinstance(kind, type) and issubclass(kind, Kind)):
            raise ValueError(f"kind {name!r}: {kind!r} is not a probes.base.Kind subclass")
        _registered[name] = KindEntry(f"{kind.__module__}:{kind.__qualname__}", extra)
        _loaded[name] = kind


def unregister(name: str) -> None:
    """Undo ``register(name, ...)``: the built-in or entry point kind (if any) is back."""
    if _registered.pop(name, None) is not None:
        _loaded.pop(name, None)


@contextmanager
def registered(name: str, kind: str | type[Kind], extra: str | None = None) -> Iterator[None]:
    """``register`` for the ``with`` block, then whatever ``name`` was before."""
    before = (_registered.get(name), _loaded.get(name))
    register(name, kind, extra)
    try:
        yield
    finally:
        unregister(name)
        if before[0] is not None:
            _registered[name] = before[0]
        if before[1] is not None:
            _loaded[name] = before[1]


def get_kind(name: str) -> type[Kind]:
    """The kind class for ``name``; KeyError if unknown, KindUnavailable if it cannot load."""
    if name in _loaded:
        return _loaded[name]
    entry = _entry(name)
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
