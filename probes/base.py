"""The contract between the scheduler and every probe kind: the ``Kind`` base class.

A kind is a subclass of ``Kind`` registered in probes/registry.py:

- ``Options``: a dataclass of the kind's own options (the block named after the
  kind in the config).  Defaults live on the dataclass; an optional ``check(self)``
  returns ``(key, message)`` pairs for semantic errors and compiles regexes or paths
  (exporter.options calls it on every options dataclass it builds, nested ones too).
- ``__init__(self, spec)``: takes the probe's spec (``spec.options`` is an
  instance of ``Options``); the base class keeps both as ``self.spec`` and
  ``self.options``.
- ``async def run(self, deadline) -> Result``: one run, no retries, no sleeping
  between runs.  ``deadline`` is the event loop time (``loop.time()``) at which
  the scheduler cuts the run; a kind may use it for its own waits but needs no
  margin of its own: when the run is cut, the scheduler asks ``timed_out``.
- ``timed_out(timeout) -> Result``: the result of a run cut at its deadline
  (default: reason timeout, "no result within T"); a kind overrides it to say
  what the run had seen ("no reply from ...", the SIP state reached).
- ``validate(spec)`` (classmethod): checks that need the whole spec (target,
  timeout), not only the options; ``[(key, message)]``.
- ``default_target``: the target when the config gives none (None: required).
- ``preflight(spec)`` (classmethod): an environment check done at config-check
  time (privileges, optional dependencies); a message or None.
- ``shutdown()`` (classmethod): release process-wide resources when the
  exporter stops.

``probes.runner.run_once`` is the one way a run is made (the scheduler,
``probewatch probe`` and the tests use it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .durations import format_duration

# The fixed set of failure reasons (probewatch_probe_failure_info{reason}).
REASONS = (
    "timeout",
    "refused",
    "unreachable",
    "unexpected_code",
    "unexpected_response",
    "auth",
    "tls",
    "error",
)

MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class Reading:
    """One extra series a kind exports beside the common ones.

    ``metric`` is the full metric name, ``labels`` are added to the probe's own
    labels (probe, kind, target and the configured labels).
    """

    metric: str
    value: float
    help: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Result:
    """What one run of a probe saw."""

    up: bool
    code: int = -1
    reason: str = ""
    message: str = ""
    readings: list[Reading] = field(default_factory=list)
    # json kind: the numeric status level (OK=0 ... Critical=3); None elsewhere.
    level: int | None = None
    level_name: str | None = None
    # json kind: the status document as fetched (Megaphone's /check/show/ID serves it).
    document: Any = None

    def __post_init__(self) -> None:
        if self.up:
            self.reason = ""
        elif self.reason not in REASONS:
            self.reason = "error"

    @classmethod
    def ok(cls, code: int = 0, message: str = "", **kw: Any) -> Result:
        return cls(up=True, code=code, message=message, **kw)

    @classmethod
    def fail(cls, reason: str, message: str, code: int = -1, **kw: Any) -> Result:
        return cls(up=False, code=code, reason=reason, message=message, **kw)


class Kind:
    """The base class of every probe kind (the module docstring is the contract)."""

    Options: ClassVar[type]
    default_target: ClassVar[str | None] = None

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.options = spec.options

    @classmethod
    def validate(cls, spec: Any) -> list[tuple[str, str]]:
        return []

    @classmethod
    def preflight(cls, spec: Any) -> str | None:
        return None

    @classmethod
    def shutdown(cls) -> None:
        return None

    async def run(self, deadline: float) -> Result:
        raise NotImplementedError(f"{type(self).__name__}.run")

    def timed_out(self, timeout: float) -> Result:
        return Result.fail("timeout", f"no result within {format_duration(timeout)}")


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Collapse white space runs to one space and cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unescape(text: str) -> str:
    r"""Honour \r \n \t \\ \0 and \xNN escapes as written in a config file."""
    out: list[str] = []
    i = 0
    simple = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\", "0": "\0"}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if nxt == "x" and i + 3 < len(text) + 1:
                try:
                    out.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                except ValueError:
                    pass
        out.append(ch)
        i += 1
    return "".join(out)


# Name resolution: getaddrinfo blocks a thread and cannot be cancelled, so each
# kind that resolves names gets its own small pool.  A resolver that hangs for
# one kind's names can make that kind's runs wait (and time out) but never
# another kind's.  Threads start on demand and stay few while lookups are fast.
RESOLVER_THREADS = 16
_RESOLVERS: dict[str, concurrent.futures.ThreadPoolExecutor] = {}


def resolver_pool(kind: str) -> concurrent.futures.ThreadPoolExecutor:
    """The thread pool ``kind`` resolves names on (created on first use)."""
    pool = _RESOLVERS.get(kind)
    if pool is None:
        pool = _RESOLVERS[kind] = concurrent.futures.ThreadPoolExecutor(
            max_workers=RESOLVER_THREADS, thread_name_prefix=f"resolve-{kind}")
    return pool


async def resolve(kind: str, host: str, port: int, family: int = 0,
                  type: int = 0) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` on ``kind``'s own resolver threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        resolver_pool(kind), functools.partial(socket.getaddrinfo, host, port, family, type))
