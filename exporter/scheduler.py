"""The scheduler owns time: it runs each active probe every period.

One asyncio event loop in its own thread drives every probe.  First runs are
spread over the period by a stable hash of the probe name; each run is cut at
its timeout; an exception in a probe becomes a failed run with reason error.
A run still going when the next is due is not started twice: it is counted in
probewatch_probe_skipped_total.  The scheduler knows no kind by name.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from probes.base import Result
from probes.registry import get_kind, loaded_kinds

from .config import ProbeSpec
from .durations import format_duration
from .logs import Throttle
from .state import ProbeState
from .telemetry import Telemetry

log = logging.getLogger("probewatch.scheduler")
# A kind that raises on every run logs once per probe per 10s, then a count.
_raised = Throttle(log, "probe {what} raised {count} more time{s} in the last {seconds}", field="probe")


def phase(name: str, period: float) -> float:
    """A stable offset in [0, period) for the first run of ``name``."""
    return (zlib.crc32(name.encode()) / 2**32) * period


class _Entry:
    """A scheduled probe: its state, its kind instance, its timer and its current run."""

    __slots__ = ("handle", "next_at", "probe", "run_task", "state")

    def __init__(self, state: ProbeState, probe: Any) -> None:
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
        self._entries: dict[str, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="scheduler", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
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
            shutdown = getattr(kind, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
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
        asyncio.run_coroutine_threadsafe(self._apply(specs), self._loop).result()

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

    def _tick(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        period = entry.state.spec.period
        if entry.run_task is not None and not entry.run_task.done():
            entry.state.skipped()
        else:
            self.telemetry.lag.observe(max(0.0, now - entry.next_at))
            entry.run_task = loop.create_task(self._run(entry))
        entry.next_at += period
        if entry.next_at <= now:  # fell more than a period behind: realign, don't burst
            entry.next_at += ((now - entry.next_at) // period + 1) * period
        self._arm(entry, loop)

    async def _run(self, entry: _Entry) -> None:
        state = entry.state
        result, latency, started = await run_probe(entry.probe, state.spec)
        try:
            if state.record(result, latency, started):
                log_change(state)
                if self.on_change is not None:
                    self.on_change(state)
        except Exception:
            log.exception("recording a result failed", extra={"probe": state.spec.name})


def _make_probe(spec: ProbeSpec) -> Any:
    try:
        return get_kind(spec.kind)(spec)
    except Exception as exc:
        log.error("cannot set up probe", extra={"probe": spec.name, "error": str(exc)})
        return _Broken(f"cannot set up probe: {type(exc).__name__}: {exc}")


class _Broken:
    def __init__(self, message: str) -> None:
        self.message = message

    async def run(self) -> Result:
        return Result.fail("error", self.message)


async def run_probe(probe: Any, spec: ProbeSpec) -> tuple[Result, float, float]:
    """Run once with the timeout; return (result, latency seconds, start Unix time)."""
    started = time.time()
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            result = await probe.run()
        if not isinstance(result, Result):
            raise TypeError(f"run() returned {type(result).__name__}, not Result")
    except TimeoutError:
        result = Result.fail("timeout", f"no result within {format_duration(spec.timeout)}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _raised.log(logging.ERROR, spec.name, "probe raised",
                    extra={"probe": spec.name, "error": f"{type(exc).__name__}: {exc}"})
        result = Result.fail("error", f"{type(exc).__name__}: {exc}")
    return result, time.perf_counter() - t0, started


def log_change(state: ProbeState) -> None:
    last = state.last
    assert last is not None
    if last.up:
        log.info("probe up", extra={"probe": state.spec.name, "code": last.code})
    else:
        log.warning("probe down", extra={"probe": state.spec.name, "reason": last.reason,
                                          "code": last.code, "detail": last.message})
