"""The scheduler owns time: it runs each active probe every period.

One asyncio event loop in its own thread drives every probe.  First runs are
spread over the period by a stable hash of the probe name; each run is cut at
its timeout, counted from when the run really starts; an exception in a probe
becomes a failed run with reason error.  The scheduler knows no kind by name.

Time is a wheel of 10 ms slots (``Wheel``): a probe's next run goes into the
slot holding its due time, a running probe's deadline into the slot holding
its timeout, and one loop timer, armed for the earliest slot with work, starts
every probe due in it and cuts every run past its deadline (the task is
cancelled and the kind's ``timed_out`` gives the result).  So 10,000 probes
cost the loop about one timer per slot, instead of a timer per probe plus an
``asyncio.timeout`` timer per run in a heap of 20,000.  A slot's lag (how late
its timer fired) is each of its runs' lag.  A kind whose ``connector()`` gives a
callback-driven run (a plain tcp connect to an address) runs without a task.

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
import functools
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

from probes.base import Kind, Result
from probes.registry import get_kind, loaded_kinds
from probes.runner import run_once, run_until_cut

from .config import ProbeSpec
from .gc_tuning import collect_before_apply, collector_paused, freeze_gc, raise_gc_threshold
from .logs import Throttle
from .probe_state import ProbeState
from .telemetry import Telemetry
from .wheel import SLOT, Wheel, slot_of

log = logging.getLogger("probewatch.scheduler")
# A kind that raises on every run logs once per probe per 10s, then a count.
_raised = Throttle(log, "probe {what} raised {count} more time{s} in the last {seconds}", field="probe")


# A probe whose slot is later than this after a start runs once early too, at
# phase(name, spread), so /status reflects every active probe within a few
# seconds of a start whatever the periods (load balancers drop a backend that
# answers 503).  Later runs keep their slot, spread over the whole period.
FIRST_RUN_SPREAD = 3.0
# The early runs are extra work on top of the probes' own slots: they are spread
# over more than FIRST_RUN_SPREAD when there are more new probes than this many
# a second would start in it (50,000 probes on one process: 12.5 s), and a batch
# of them whose timer fires more than EARLY_LATE late is dropped (those probes
# run at their slots), so a start never makes the probes' own runs late.
EARLY_RUNS_PER_SECOND = 4000.0
EARLY_LATE = 0.1


# The loop's default executor serves getaddrinfo for the kinds that resolve
# names with loop.getaddrinfo (tcp, udp); larger than asyncio's min(32, cpus+4)
# so a burst of lookups on a small machine does not queue behind six threads.
DEFAULT_EXECUTOR_THREADS = 32
LATE_FRACTION = 0.25
LATE_MAX = 1.0
# The loop's heartbeat: a timer every BEAT seconds; firing later than STALL_MIN
# is a stall, kept to judge the failures of runs it overlapped.
BEAT = 0.1
STALL_MIN = 0.05


def late_bound(period: float) -> float:
    """How late a run may start and still be started: min(25% of the period, 1 s)."""
    return min(LATE_FRACTION * period, LATE_MAX)


def early_spread(new_probes: int) -> float:
    """Seconds over which the early first runs of ``new_probes`` new active probes are spread."""
    return max(FIRST_RUN_SPREAD, new_probes / EARLY_RUNS_PER_SECOND)


def phase(name: str, period: float) -> float:
    """A stable offset in [0, period) for the first run of ``name``."""
    return (zlib.crc32(name.encode()) / 2**32) * period


class _Entry:
    """A scheduled probe: its state, its kind instance, its next slot and its current run."""

    __slots__ = ("began", "connect", "deadline_slot", "fast_done", "fast_running", "live", "next_at",
                 "probe", "run_seq", "run_task", "started", "state", "timed_out")

    def __init__(self, state: ProbeState, probe: Kind | None) -> None:
        self.state = state
        self.probe = probe
        # A kind may offer a callback-driven run (probes.tcp's plain connect): no task per run.
        self.connect: Any = probe.connector() if probe is not None else None
        self.fast_done: Callable[[Result], None] | None = None  # set by the scheduler
        self.fast_running = False
        self.began = 0.0  # loop time the current fast run started
        self.started = 0.0  # its Unix time
        self.next_at = 0.0  # loop time of the next run, before rounding up to its slot
        self.run_task: asyncio.Task[None] | None = None
        self.run_seq = 0  # which run a deadline in the wheel belongs to
        self.deadline_slot = 0  # the wheel slot of the current run's deadline
        self.timed_out = False  # the wheel cut the current run at its deadline
        self.live = True  # False once the probe left the config: its wheel items are dropped

    def was_cut(self) -> bool:
        """Whether the cancellation the current run got was the wheel's, at its deadline."""
        return self.timed_out and self.live

    @property
    def busy(self) -> bool:
        """The previous run is still going."""
        task = self.run_task
        return self.fast_running or (task is not None and not task.done())

    def cancel(self) -> None:
        self.live = False
        if self.fast_running:
            self.fast_running = False
            self.connect.cancel()
        if self.run_task is not None:
            self.run_task.cancel()


class Scheduler:
    """Runs probes on one event loop, from a wheel of 10 ms slots (see ``Wheel``)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        raise_gc_threshold()
        self._entries: dict[str, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stalls: deque[tuple[float, float]] = deque(maxlen=1024)  # (loop time, seconds)
        self._beat_due = 0.0
        self._wheel = Wheel(self._fire)
        self._skipped = {cause: telemetry.skipped.labels(cause) for cause in ("busy", "late")}

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
        self._wheel.loop = self._loop
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
        self._wheel.clear()
        for entry in entries:
            entry.cancel()
        runs = [e.run_task for e in entries if e.run_task is not None]
        await asyncio.gather(*runs, return_exceptions=True)

    # -- config ------------------------------------------------------------
    def apply(self, specs: list[ProbeSpec]) -> None:
        """Replace the probe set; unchanged probes keep their state and schedule."""
        assert self._loop is not None, "start() first"
        collect_before_apply()
        with collector_paused():
            asyncio.run_coroutine_threadsafe(self._apply(specs), self._loop).result()
        freeze_gc()

    async def _apply(self, specs: list[ProbeSpec]) -> None:
        loop = asyncio.get_running_loop()
        old = self._entries
        new: dict[str, _Entry] = {}
        wall = time.time() - loop.time()
        spread = early_spread(sum(1 for s in specs if s.active and s.name not in old))
        early_slots: dict[int, list[_Entry]] = {}
        for spec in specs:
            entry = old.get(spec.name)
            if entry is not None and entry.state.spec.same_definition(spec):
                if entry.state.spec.source != spec.source:
                    entry.state.spec = spec
                new[spec.name] = entry
                continue
            entry = _Entry(ProbeState(spec), _make_probe(spec) if spec.active else None)
            if entry.connect is not None:
                entry.fast_done = functools.partial(self._fast_done, entry)
            if spec.active:
                entry.next_at = loop.time() + phase(spec.name, spec.period)
                self._arm(entry, wall)
                early = phase(spec.name, min(spec.period, spread))
                if entry.next_at - loop.time() > early:
                    early_slots.setdefault(slot_of(loop.time() + early), []).append(entry)
            new[spec.name] = entry
        for k, batch in early_slots.items():
            loop.call_at(k * SLOT, self._early_runs, batch, k * SLOT, loop)
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
    def _arm(self, entry: _Entry, wall: float) -> None:
        """Put ``entry`` in the slot of its next run; ``wall`` is Unix time minus loop time."""
        k = slot_of(entry.next_at)
        entry.state.next_run_at = k * SLOT + wall
        self._wheel.add_start(k, entry)

    def _early_runs(self, batch: list[_Entry], at: float, loop: asyncio.AbstractEventLoop) -> None:
        """The extra first runs of the probes whose slot is late (see FIRST_RUN_SPREAD).

        Dropped when the loop is EARLY_LATE behind: they would only add to its backlog.
        """
        now = loop.time()
        if now - at > EARLY_LATE:
            return
        wall = time.time() - now
        for entry in batch:
            if entry.live and entry.state.runs_total == 0 and not entry.busy:
                self._start(entry, loop, now, wall)

    def _start(self, entry: _Entry, loop: asyncio.AbstractEventLoop, slot: float, wall: float) -> None:
        entry.run_seq += 1
        entry.timed_out = False
        if entry.connect is None:
            entry.run_task = loop.create_task(self._run(entry, slot))
            return
        # The fast path: the kind's callbacks, the deadline in the wheel, no task.
        began = entry.began = loop.time()
        entry.started = began + wall
        entry.fast_running = True
        entry.deadline_slot = self._wheel.add_deadline(slot_of(began + entry.state.spec.timeout), entry)
        try:
            entry.connect.start(loop, entry.fast_done)
        except Exception as exc:  # a kind's bug is a failed run, as in _run
            if entry.fast_running:
                entry.fast_running = False
                entry.connect.cancel()
                self._wheel.drop_deadline(entry.deadline_slot)
                self._finish(entry, Result.fail("error", f"{type(exc).__name__}: {exc}"), began,
                             entry.started, loop.time() - began)

    def _fast_done(self, entry: _Entry, result: Result) -> None:
        entry.fast_running = False
        self._wheel.drop_deadline(entry.deadline_slot)
        if entry.live:
            assert self._loop is not None
            self._finish(entry, result, entry.began, entry.started, self._loop.time() - entry.began)

    def _fire(self, starts: list[_Entry], deadlines: list[tuple[_Entry, int]], at: float) -> None:
        """One slot: cut the runs past their deadline, then start the probes due."""
        loop = self._loop
        assert loop is not None
        for entry, seq in deadlines:
            if entry.run_seq != seq:
                continue
            if entry.fast_running:
                entry.fast_running = False
                entry.connect.cancel()
                self._finish(entry, self._timed_out(entry), entry.began, entry.started,
                             loop.time() - entry.began)
                continue
            task = entry.run_task
            if task is not None and not task.done():
                entry.timed_out = True
                task.cancel()
        if not starts:
            return
        now = loop.time()
        lag = now - at if now > at else 0.0
        wall = time.time() - now
        late_skip = busy_skip = 0
        ran = 0
        for entry in starts:
            if not entry.live:
                continue
            ran += 1
            period = entry.state.spec.period
            if entry.busy:
                entry.state.skipped("busy")
                busy_skip += 1
            elif lag > late_bound(period):
                entry.state.skipped("late")
                late_skip += 1
            else:
                self._start(entry, loop, at, wall)
            entry.next_at += period
            if entry.next_at <= now:  # fell more than a period behind: realign, don't burst
                entry.next_at += ((now - entry.next_at) // period + 1) * period
            self._arm(entry, wall)
        if ran:
            self.telemetry.lag.observe_many(lag, ran)
        if busy_skip:
            self._skipped["busy"].inc(busy_skip)
        if late_skip:
            self._skipped["late"].inc(late_skip)

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
        self._skipped[cause].inc()

    async def _run(self, entry: _Entry, slot: float) -> None:
        state = entry.state
        spec = state.spec
        loop = self._loop
        assert loop is not None
        began = loop.time()
        bound = late_bound(spec.period)
        # The task may itself start late when the loop is behind: the same bound.
        if began - slot > bound:
            self._skip(entry, "late")
            return
        assert entry.probe is not None  # only active probes are armed
        started = time.time()
        deadline = began + spec.timeout
        entry.deadline_slot = self._wheel.add_deadline(slot_of(deadline), entry)
        result = await run_until_cut(entry.probe, spec, deadline, entry.was_cut, _log_raised(spec))
        self._wheel.drop_deadline(entry.deadline_slot)  # a no-op when the wheel cut it
        self._finish(entry, result, began, started, loop.time() - began)

    @staticmethod
    def _timed_out(entry: _Entry) -> Result:
        assert entry.probe is not None
        return entry.probe.timed_out(entry.state.spec.timeout)

    def _finish(self, entry: _Entry, result: Result, began: float, started: float, latency: float) -> None:
        """Record a finished run, unless the loop stood still through it and it failed."""
        state = entry.state
        if not result.up and self._stalled(began) > late_bound(state.spec.period):
            # The loop stood still for longer than the bound during this run:
            # the failure may be the exporter's backlog, not the target's.
            self._skip(entry, "late")
            return
        try:
            if state.record(result, latency, started):
                log_change(state)
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
