"""The scheduler owns time: it runs each active probe every period.

One asyncio event loop in its own thread drives every probe.  First runs are
spread over the period by a stable hash of the probe name; each run is cut at
its timeout, counted from when the run really starts; an exception in a probe
becomes a failed run with reason error.  The scheduler knows no kind by name.

Runs not started are counted, per probe (probewatch_probe_skipped_total{cause})
and for the exporter (probewatch_skipped_runs_total{cause}):

- ``busy``: the previous run of the probe was still going at the slot.
- ``late``: the loop could not start the run within ``late_bound(period)`` of
  its slot (a quarter of the period, at most one second), so it is skipped
  rather than started so late that it fails.  A run that failed while the
  loop stood still for longer than that bound (a heartbeat timer measures it)
  is also discarded as late, not recorded as a failure: the loop was too far
  behind to tell a slow target from its own backlog.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable

from probes.base import Kind, Result
from probes.registry import get_kind, loaded_kinds
from probes.runner import run_once

from .config import ProbeSpec
from .logs import Throttle
from .state import ProbeState
from .telemetry import Telemetry

log = logging.getLogger("probewatch.scheduler")
# A kind that raises on every run logs once per probe per 10s, then a count.
_raised = Throttle(log, "probe {what} raised {count} more time{s} in the last {seconds}", field="probe")


# A probe whose slot is later than this after a start runs once early too, at
# phase(name, FIRST_RUN_SPREAD), so /status reflects every active probe within a
# few seconds of a start whatever the periods (load balancers drop a backend
# that answers 503).  Later runs keep their slot, spread over the whole period.
FIRST_RUN_SPREAD = 3.0


# The loop's default executor serves getaddrinfo for the kinds that resolve
# names with loop.getaddrinfo (tcp, udp); larger than asyncio's min(32, cpus+4)
# so a burst of lookups on a small machine does not queue behind six threads.
DEFAULT_EXECUTOR_THREADS = 32
LATE_FRACTION = 0.25
LATE_MAX = 1.0
# Python's cyclic collector: generation 0 is collected after this many new
# container objects (CPython's default is 700).  See raise_gc_threshold().
GC_GEN0 = 50_000
FULL_COLLECT_EVERY = 600.0  # seconds between full collections done at a config apply
# The loop's heartbeat: a timer every BEAT seconds; firing later than STALL_MIN
# is a stall, kept to judge the failures of runs it overlapped.
BEAT = 0.1
STALL_MIN = 0.05


def late_bound(period: float) -> float:
    """How late a run may start and still be started: min(25% of the period, 1 s)."""
    return min(LATE_FRACTION * period, LATE_MAX)


def raise_gc_threshold() -> None:
    """Collect the youngest generation every GC_GEN0 allocations, not every 700.

    Done when the scheduler is made, before the config is loaded: loading and
    then running tens of thousands of probes allocates long-lived objects
    faster than CPython's default thresholds are made for, and its frequent
    collections (most of them promoting survivors towards full collections
    that walk the whole heap) ate half the CPU at 50,000 probes.
    """
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gc.get_threshold()[0], GC_GEN0), max(gen1, 20), max(gen2, 100))


_last_full_collect = -math.inf


def collect_before_apply() -> None:
    """Before a config apply: thaw what the last apply froze and collect.

    A full collection (which walks the whole heap: about a second at 60,000
    probes on a slow machine) at most every FULL_COLLECT_EVERY seconds, the
    young generations otherwise, so frozen cyclic garbage is reclaimed without
    stalling the loop on every API write.
    """
    global _last_full_collect
    gc.unfreeze()
    now = time.monotonic()
    if now - _last_full_collect >= FULL_COLLECT_EVERY:
        _last_full_collect = now
        gc.collect()
    else:
        gc.collect(1)


def freeze_gc() -> None:
    """After a config apply: move the probe set out of the cyclic collector's sight.

    The specs, kind instances and states live until the next reload; frozen,
    a full collection no longer walks them.  No collection here (it came
    before the apply).  Reference counting still frees almost everything at
    once; the collector only finds cycles.
    """
    gc.freeze()


def phase(name: str, period: float) -> float:
    """A stable offset in [0, period) for the first run of ``name``."""
    return (zlib.crc32(name.encode()) / 2**32) * period


class _Entry:
    """A scheduled probe: its state, its kind instance, its timer and its current run."""

    __slots__ = ("handle", "next_at", "probe", "run_task", "state")

    def __init__(self, state: ProbeState, probe: Kind | None) -> None:
        self.state = state
        self.probe = probe
        self.next_at = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self.run_task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.run_task is not None:
            self.run_task.cancel()


class Scheduler:
    """Runs probes on one event loop; each probe is a timer, not a task, between runs."""

    def __init__(self, telemetry: Telemetry,
                 on_change: Callable[[ProbeState], None] | None = None) -> None:
        self.telemetry = telemetry
        self.on_change = on_change
        raise_gc_threshold()
        self._entries: dict[str, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stalls: deque[tuple[float, float]] = deque(maxlen=1024)  # (loop time, seconds)
        self._beat_due = 0.0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="scheduler", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
            max_workers=DEFAULT_EXECUTOR_THREADS, thread_name_prefix="loop-default"))
        asyncio.set_event_loop(self._loop)
        self._beat_due = self._loop.time()
        self._loop.call_soon(self._beat, self._loop)
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self, timeout: float = 2.0) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._cancel_all(), loop)
        try:
            future.result(timeout)
        except Exception as exc:
            log.warning("probes did not stop in time", extra={"error": str(exc)})
        _raised.close()  # write the pending counts now, not never
        for kind in loaded_kinds():
            try:
                kind.shutdown()
            except Exception as exc:
                log.warning("kind shutdown failed", extra={"error": str(exc)})
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    async def _cancel_all(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.cancel()
        runs = [e.run_task for e in entries if e.run_task is not None]
        await asyncio.gather(*runs, return_exceptions=True)

    # -- config ------------------------------------------------------------
    def apply(self, specs: list[ProbeSpec]) -> None:
        """Replace the probe set; unchanged probes keep their state and schedule."""
        assert self._loop is not None, "start() first"
        collect_before_apply()
        asyncio.run_coroutine_threadsafe(self._apply(specs), self._loop).result()
        freeze_gc()

    async def _apply(self, specs: list[ProbeSpec]) -> None:
        loop = asyncio.get_running_loop()
        old = self._entries
        new: dict[str, _Entry] = {}
        for spec in specs:
            entry = old.get(spec.name)
            if entry is not None and entry.state.spec.fingerprint == spec.fingerprint:
                if entry.state.spec.source != spec.source:
                    entry.state.spec = spec
                new[spec.name] = entry
                continue
            entry = _Entry(ProbeState(spec), _make_probe(spec) if spec.active else None)
            if spec.active:
                entry.next_at = loop.time() + phase(spec.name, spec.period)
                self._arm(entry, loop)
                early = phase(spec.name, min(spec.period, FIRST_RUN_SPREAD))
                if entry.next_at - loop.time() > early:
                    loop.call_later(early, self._early_run, entry, loop)
            new[spec.name] = entry
        stale = [e for name, e in old.items() if new.get(name) is not e]
        self._entries = new
        for entry in stale:
            entry.cancel()
        active = sum(1 for s in specs if s.active)
        self.telemetry.probes.labels("active").set(active)
        self.telemetry.probes.labels("inactive").set(len(specs) - active)

    # -- reading -------------------------------------------------------------
    def states(self) -> list[ProbeState]:
        return [e.state for e in list(self._entries.values())]

    def state(self, name: str) -> ProbeState | None:
        entry = self._entries.get(name)
        return entry.state if entry else None

    # -- running -------------------------------------------------------------
    def _arm(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        entry.state.next_run_at = time.time() + max(0.0, entry.next_at - loop.time())
        entry.handle = loop.call_at(entry.next_at, self._tick, entry, loop)

    def _early_run(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        """The extra first run of a probe whose slot is late (see FIRST_RUN_SPREAD)."""
        current = self._entries.get(entry.state.spec.name) is entry
        if current and entry.state.runs_total == 0 and entry.run_task is None:
            entry.run_task = loop.create_task(self._run(entry, loop.time()))

    def _tick(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        period = entry.state.spec.period
        lag = max(0.0, now - entry.next_at)
        self.telemetry.lag.observe(lag)
        if entry.run_task is not None and not entry.run_task.done():
            self._skip(entry, "busy")
        elif lag > late_bound(period):
            self._skip(entry, "late")
        else:
            entry.run_task = loop.create_task(self._run(entry, entry.next_at))
        entry.next_at += period
        if entry.next_at <= now:  # fell more than a period behind: realign, don't burst
            entry.next_at += ((now - entry.next_at) // period + 1) * period
        self._arm(entry, loop)

    # -- how far behind the loop is ------------------------------------------------
    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        """A timer every BEAT seconds; how late it fires is how long the loop stood still."""
        now = loop.time()
        gap = now - self._beat_due
        if gap > STALL_MIN:
            self._stalls.append((now, gap))
        self._beat_due = now + BEAT
        loop.call_at(self._beat_due, self._beat, loop)

    def _stalled(self, since: float) -> float:
        """The longest stall of the loop (seconds) since loop time ``since``, the current one included."""
        now = self._loop.time() if self._loop is not None else since
        longest = max(0.0, now - self._beat_due)
        for ended, gap in reversed(self._stalls):
            if ended <= since:
                break
            longest = max(longest, gap)
        return longest

    def _skip(self, entry: _Entry, cause: str) -> None:
        entry.state.skipped(cause)
        self.telemetry.skipped.labels(cause).inc()

    async def _run(self, entry: _Entry, slot: float) -> None:
        state = entry.state
        bound = late_bound(state.spec.period)
        # The task may itself start late when the loop is behind: the same bound.
        if asyncio.get_running_loop().time() - slot > bound:
            self._skip(entry, "late")
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert entry.probe is not None  # only active probes are armed
        result, latency, started = await run_probe(entry.probe, state.spec)
        if not result.up and self._stalled(began) > bound:
            # The loop stood still for longer than the bound during this run:
            # the failure may be the exporter's backlog, not the target's.
            self._skip(entry, "late")
            return
        try:
            if state.record(result, latency, started):
                log_change(state)
                if self.on_change is not None:
                    self.on_change(state)
        except Exception:
            log.exception("recording a result failed", extra={"probe": state.spec.name})


def _make_probe(spec: ProbeSpec) -> Kind:
    try:
        return get_kind(spec.kind)(spec)
    except Exception as exc:
        log.error("cannot set up probe", extra={"probe": spec.name, "error": str(exc)})
        return _Broken(f"cannot set up probe: {type(exc).__name__}: {exc}")


class _Broken(Kind):
    """Stands in for a probe whose kind could not be set up: every run fails with why."""

    Options = object

    def __init__(self, message: str) -> None:
        self.message = message

    async def run(self, deadline: float) -> Result:
        return Result.fail("error", self.message)


def _log_raised(spec: ProbeSpec) -> Callable[[Exception], None]:
    def log_it(exc: Exception) -> None:
        _raised.log(logging.ERROR, spec.name, "probe raised",
                    extra={"probe": spec.name, "error": f"{type(exc).__name__}: {exc}"})
    return log_it


async def run_probe(probe: Kind, spec: ProbeSpec) -> tuple[Result, float, float]:
    """One run through probes.runner.run_once, a kind's exception logged (throttled)."""
    return await run_once(probe, spec, _log_raised(spec))


def log_change(state: ProbeState) -> None:
    last = state.last
    assert last is not None
    if last.up:
        log.info("probe up", extra={"probe": state.spec.name, "code": last.code})
    else:
        log.warning("probe down", extra={"probe": state.spec.name, "reason": last.reason,
                                          "code": last.code, "detail": last.message})
