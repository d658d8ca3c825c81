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
    and a timeout per run.  A run that ends before its deadline drops it
    (``drop_deadline``): a slot left with nothing to do is never woken for,
    so a few probes cost the loop one wake-up per start, not two.
    """

    def __init__(self, fire: Callable[[list[Any], list[tuple[Any, int]], float], None]) -> None:
        self._fire = fire
        self.starts: dict[int, list[Any]] = {}
        self.deadlines: dict[int, list[tuple[Any, int]]] = {}
        self._pending: dict[int, int] = {}  # slot -> deadlines in it not yet dropped
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

    def add_deadline(self, k: int, entry: Any) -> int:
        """Cut ``entry``'s current run (``entry.run_seq``) in slot ``k``; returns ``k``."""
        bucket = self.deadlines.get(k)
        if bucket is None:
            self.deadlines[k] = [(entry, entry.run_seq)]
            self._pending[k] = 1
            if k not in self.starts:
                self._note(k)
        else:
            bucket.append((entry, entry.run_seq))
            self._pending[k] += 1
        return k

    def drop_deadline(self, k: int) -> None:
        """A run whose deadline is in slot ``k`` ended; a no-op once the slot has fired."""
        left = self._pending.get(k)
        if left is None:
            return
        if left > 1:
            self._pending[k] = left - 1
            return
        del self._pending[k], self.deadlines[k]
        if k not in self.starts and k == self._timer_slot and self._timer is not None and not self._firing:
            self._timer.cancel()
            self._timer = None
            self._arm_next()

    def _arm_next(self) -> None:
        """Arm the timer for the earliest slot that still has work (empty ones are dropped)."""
        heap, starts, deadlines = self._heap, self.starts, self.deadlines
        while heap and heap[0] not in starts and heap[0] not in deadlines:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0])

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
                self._pending.pop(k, None)
                if starts is not None or deadlines is not None:
                    self._fire(starts or [], deadlines or [], k * SLOT)
        finally:
            self._firing = False
            self._arm_next()

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.starts.clear()
        self.deadlines.clear()
        self._pending.clear()
        self._heap.clear()
