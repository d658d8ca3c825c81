"""The last runs of a probe, kept compactly.

Ten thousand probes times 100 runs is a million runs: as objects that would be
hundreds of MiB.  Here the numbers live in typed arrays and equal messages
share one string, so a full history costs about 25 bytes a run.
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
    """A ring of the last ``size`` runs, oldest first when iterated."""

    __slots__ = ("_code", "_latency", "_levels", "_messages", "_next", "_reason", "_started", "size")

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._started = array("d")
        self._latency = array("f")  # float32: microsecond precision is plenty for latency
        self._code = array("i")
        self._reason = bytearray()
        self._messages: list[str] = []
        self._levels: list[str | None] | None = None  # only kinds with levels pay for it
        self._next = 0

    def __len__(self) -> int:
        return len(self._started)

    def append(self, run: Run) -> None:
        self.add(run.started, run.latency, run.up, run.code, run.reason, run.message, run.level_name)

    def add(self, started: float, latency: float, up: bool, code: int, reason: str, message: str,
            level_name: str | None = None) -> None:
        """Append one run from its fields (the scheduler's path: no Run object made)."""
        messages = self._messages
        if messages:
            previous = messages[self._next - 1]
            if previous == message:
                message = previous
        reason_index = 0 if up else _REASON_INDEX.get(reason, _REASON_INDEX["error"])
        if level_name is not None and self._levels is None:
            self._levels = [None] * len(self._started)
        if len(self._started) < self.size:
            self._started.append(started)
            self._latency.append(latency)
            self._code.append(code)
            self._reason.append(reason_index)
            messages.append(message)
            if self._levels is not None:
                self._levels.append(level_name)
            self._next = len(self._started) % self.size
            return
        i = self._next
        self._started[i], self._latency[i], self._code[i] = started, latency, code
        self._reason[i] = reason_index
        messages[i] = message
        if self._levels is not None:
            self._levels[i] = level_name
        self._next = (i + 1) % self.size

    def __iter__(self) -> Iterator[Run]:
        n = len(self._started)
        start = self._next if n == self.size else 0
        for k in range(n):
            i = (start + k) % self.size if n == self.size else k
            reason = self._reason[i]
            yield Run(self._started[i], self._latency[i], reason == 0, self._code[i],
                      "" if reason == 0 else REASONS[reason - 1], self._messages[i],
                      self._levels[i] if self._levels is not None else None)

    def copy(self) -> RunHistory:
        other = RunHistory(self.size)
        for run in self:
            other.append(run)
        return other
