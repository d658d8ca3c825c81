"""The last runs of a probe, kept compactly.

Ten thousand probes times 100 runs is a million runs: as objects that would be
hundreds of MiB.  Here the numbers live in typed arrays and equal messages
are kept once, so a full history costs about 16 bytes a run.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from probes.base import REASONS

_REASON_INDEX = {r: i + 1 for i, r in enumerate(REASONS)}  # 0 = up


@dataclass(frozen=True)
class Run:
    """One finished run, as the status API and page show it."""

    started: float  # Unix time
    latency: float
    up: bool
    code: int
    reason: str
    message: str
    level_name: str | None = None


class RunHistory:
    """A ring of the last ``size`` runs, oldest first when iterated.

    About 16 bytes a run: start (float64), latency (float32), code (int16,
    widened to int32 the first time a code does not fit), reason (a byte) and
    message (a byte: its index among the probe's distinct messages, which are
    compacted to those still in the ring when 255 would be passed).  100,000
    probes with full histories hold 160 MB of it, not 250.
    """

    __slots__ = ("_code", "_distinct", "_latency", "_levels", "_message", "_next", "_reason", "_started",
                 "size")

    def __init__(self, size: int = 100) -> None:
        if not 0 < size <= 255:
            raise ValueError(f"a run history holds 1 to at most 255 runs, not {size}")
        self.size = size
        self._started = array("d")
        self._latency = array("f")  # float32: microsecond precision is plenty for latency
        self._code = array("h")
        self._reason = bytearray()
        self._message = bytearray()  # index into _distinct
        self._distinct: list[str] = []
        self._levels: list[str | None] | None = None  # only kinds with levels pay for it
        self._next = 0

    def __len__(self) -> int:
        return len(self._started)

    def append(self, run: Run) -> None:
        self.add(run.started, run.latency, run.up, run.code, run.reason, run.message, run.level_name)

    def _message_index(self, message: str, replacing: int) -> int:
        """``message``'s index in _distinct, added if new (slot ``replacing``, or -1, is being overwritten)."""
        distinct = self._distinct
        try:
            return distinct.index(message)
        except ValueError:
            pass
        if len(distinct) == 255:
            # Keep only the messages still in the ring (at most size of them).
            kept = sorted(set(self._message[i] for i in range(len(self._message)) if i != replacing))
            remap = {old: new for new, old in enumerate(kept)}
            self._distinct = distinct = [distinct[i] for i in kept]
            self._message = bytearray(remap.get(i, 0) for i in self._message)
        distinct.append(message)
        return len(distinct) - 1

    def add(self, started: float, latency: float, up: bool, code: int, reason: str, message: str,
            level_name: str | None = None) -> None:
        """Append one run from its fields (the scheduler's path: no Run object made)."""
        reason_index = 0 if up else _REASON_INDEX.get(reason, _REASON_INDEX["error"])
        if level_name is not None and self._levels is None:
            self._levels = [None] * len(self._started)
        if not -32768 <= code <= 32767 and self._code.typecode == "h":
            self._code = array("i", self._code)
        full = len(self._started) >= self.size
        distinct = self._distinct
        if distinct and distinct[-1] == message:  # most runs repeat the last new message
            index = len(distinct) - 1
        else:
            index = self._message_index(message, self._next if full else -1)
        if not full:
            self._started.append(started)
            self._latency.append(latency)
            self._code.append(code)
            self._reason.append(reason_index)
            self._message.append(index)
            if self._levels is not None:
                self._levels.append(level_name)
            self._next = len(self._started) % self.size
            return
        i = self._next
        self._started[i], self._latency[i], self._code[i] = started, latency, code
        self._reason[i] = reason_index
        self._message[i] = index
        if self._levels is not None:
            self._levels[i] = level_name
        self._next = (i + 1) % self.size

    def __iter__(self) -> Iterator[Run]:
        n = len(self._started)
        start = self._next if n == self.size else 0
        distinct = self._distinct
        for k in range(n):
            i = (start + k) % self.size if n == self.size else k
            reason = self._reason[i]
            yield Run(self._started[i], self._latency[i], reason == 0, self._code[i],
                      "" if reason == 0 else REASONS[reason - 1], distinct[self._message[i]],
                      self._levels[i] if self._levels is not None else None)

    def copy(self) -> RunHistory:
        other = RunHistory(self.size)
        for run in self:
            other.append(run)
        return other
