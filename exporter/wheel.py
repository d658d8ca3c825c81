"""The scheduler's time: a wheel of SLOT-second slots driven by one loop timer.

A slot holds the probes due in it and the runs whose deadline falls in it;
exporter.scheduler fills it and says what a slot's firing does.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Any

# The wheel's slot: probes due within one SLOT start together, from one loop timer.
SLOT = 0.01
EARLY = 0.001  # a slot this close to due is run now


def slot_of(when: float) -> int:
    """The wheel slot holding loop time ``when``: the first slot boundary at or after it."""
    return math.ceil(when / SLOT - 1e-9)


class Wheel:
    """Slots of SLOT seconds; one loop timer, armed for the earliest slot with work.

    A slot holds the probes due in it and the runs whose deadline falls in it,
    so 10,000 probes cost the event loop about one timer per slot, not a timer
    and a timeout per run.
    """

    def __init__(self, fire: Callable[[list[Any], list[tuple[Any, int]], float], None]) -> None:
        self._fire = fire
        self.starts: dict[int, list[Any]] = {}
        self.deadlines: dict[int, list[tuple[Any, int]]] = {}
        self._heap: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0
        self._firing = False  # in _run: it arms the timer once, at the end
        self.loop: asyncio.AbstractEventLoop | None = None

    def _note(self, k: int) -> None:
        heapq.heappush(self._heap, k)
        if not self._firing and (self._timer is None or k < self._timer_slot):
            self._arm(k)

    def _arm(self, k: int) -> None:
        assert self.loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = k
        self._timer = self.loop.call_at(k * SLOT, self._run)

    def add_start(self, k: int, entry: Any) -> None:
        bucket = self.starts.get(k)
        if bucket is None:
            self.starts[k] = [entry]
            if k not in self.deadlines:
                self._note(k)
        else:
            bucket.append(entry)

    def add_deadline(self, k: int, entry: Any) -> None:
        bucket = self.deadlines.get(k)
        if bucket is None:
            self.deadlines[k] = [(entry, entry.run_seq)]
            if k not in self.starts:
                self._note(k)
        else:
            bucket.append((entry, entry.run_seq))

    def _run(self) -> None:
        assert self.loop is not None
        self._timer = None
        self._firing = True
        heap = self._heap
        try:
            # A timer may fire a hair before its time (the loop's clock resolution).
            while heap and heap[0] * SLOT <= self.loop.time() + EARLY:
                k = heapq.heappop(heap)
                starts = self.starts.pop(k, None)
                deadlines = self.deadlines.pop(k, None)
                if starts is not None or deadlines is not None:
                    self._fire(starts or [], deadlines or [], k * SLOT)
        finally:
            self._firing = False
            if heap:
                self._arm(heap[0])

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.starts.clear()
        self.deadlines.clear()
        self._heap.clear()
