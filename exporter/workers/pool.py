"""The parent's side of the workers: start, feed, ask, restart, stop.

``WorkerPool`` stands where the Scheduler stands in one process (``start``,
``stop``, ``apply``, ``states``, ``state``): ``Exporter.apply`` hands it every
probe of this instance and the pool sends each worker its share.  A worker
that dies (or stops answering) is logged, counted in
probewatch_worker_restarts_total{worker} and started again with the specs it
last had, so its probes' series come back (their counters from 0).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..config import ProbeSpec
from ..exposition import Family
from ..probe_state import ProbeState
from ..sharding import Shard
from .channel import Channel, WorkerGone, WorkerSlow, pair

log = logging.getLogger("probewatch.workers")
T = TypeVar("T")

# How often the watcher looks for dead workers, and how long a restart waits
# after the previous one of the same worker (a worker that dies at start must
# not spin).
WATCH_EVERY = 0.2
RESTART_BACKOFF = 1.0
STOP_GRACE = 5.0
# Replies: a scrape or a states request within ASK_TIMEOUT (else the answer goes
# without that worker's part); a worker that answered nothing for HUNG_AFTER is
# hung: killed and restarted.  An apply within APPLY_TIMEOUT plus a second per
# APPLY_RATE specs (50,000 tcp specs take ~4 s of CPU; a shared 2-core machine
# may give a worker a fifth of a core).
ASK_TIMEOUT = 8.0  # below Prometheus' default scrape timeout (10 s)
HUNG_AFTER = 60.0
APPLY_TIMEOUT = 60.0
APPLY_RATE = 200


def share_of(name: str, shard: Shard, workers: int) -> int:
    """Which worker runs probe ``name``: the name's sha256 (as ``Shard.owns``), divided
    by the shard count first, so a shard's probes spread over every worker."""
    digest = hashlib.sha256(name.encode()).digest()
    return (int.from_bytes(digest[:8], "big") // shard.count) % workers


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.specs: list[ProbeSpec] = []
        self.loaded = False  # the worker runs self.specs
        self.started_at = 0.0
        # Held while the worker is (re)started or fed, so an apply and a restart
        # never interleave.
        self.lock = threading.RLock()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0


class WorkerPool:
    def __init__(self, count: int, shard: Shard, registry: CollectorRegistry, log_args: list[str]) -> None:
        self.count = count
        self.shard = shard
        self.log_args = log_args
        self.workers = [Worker(i) for i in range(count)]
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._calls = concurrent.futures.ThreadPoolExecutor(max(2, count), thread_name_prefix="worker-call")
        self.restarts = Counter("probewatch_worker_restarts", "Worker processes restarted after they died "
                                "or stopped answering (serve --workers).", ["worker"], registry=registry)
        self.up = Gauge("probewatch_worker_up", "1 while the worker process runs its probes "
                        "(serve --workers).", ["worker"], registry=registry)
        for w in self.workers:
            self.restarts.labels(str(w.index))
            self.up.labels(str(w.index)).set(0)

    # -- the Scheduler's interface ---------------------------------------------------
    def start(self) -> None:
        for w in self.workers:
            with w.lock:
                self._spawn(w)
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._watcher.start()

    def apply(self, specs: list[ProbeSpec]) -> None:
        """Send each worker its share; a worker that is down gets it when restarted."""
        shares: list[list[ProbeSpec]] = [[] for _ in self.workers]
        for spec in specs:
            shares[share_of(spec.name, self.shard, self.count)].append(spec)

        def feed(w: Worker) -> None:
            with w.lock:
                w.specs = shares[w.index]
                self._load(w)  # a scrape meanwhile waits, then sees the new set

        self._each(feed)

    def states(self) -> list[ProbeState]:
        replies = self._each(lambda w: self._ask(w, ("states", None)))
        return [s for reply in replies if reply for s in reply[1]]

    def state(self, name: str) -> ProbeState | None:
        w = self.workers[share_of(name, self.shard, self.count)]
        reply = self._ask(w, ("states", [name]))
        return reply[1][0] if reply and reply[1] else None

    def stop(self, timeout: float = STOP_GRACE) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        self._each(lambda w: self._end(w, timeout))
        self._calls.shutdown(wait=False, cancel_futures=True)

    # -- for /metrics and /-/ready -----------------------------------------------------
    def scrape(self, gzip: bool = False) -> list[tuple[list[Family], list[Any]]]:
        """Every answering worker's (probe families, own telemetry families); with
        ``gzip`` each family's samples come as one gzip member."""
        replies = self._each(lambda w: self._ask(w, ("scrape", gzip)))
        return [(r[1], r[2]) for r in replies if r]

    def loaded(self) -> bool:
        return all(w.loaded for w in self.workers)

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    # -- inside ------------------------------------------------------------------------
    def _each(self, call: Callable[[Worker], T]) -> list[T]:
        if self.count == 1:
            return [call(self.workers[0])]
        return list(self._calls.map(call, self.workers))

    def _ask(self, w: Worker, message: tuple[Any, ...]) -> Any:
        channel = w.channel
        if channel is None or not w.loaded:
            return None
        try:
            return channel.call(message, ASK_TIMEOUT)
        except WorkerSlow as exc:
            # Slow (a busy machine): this answer goes without the worker's part; a
            # worker silent for HUNG_AFTER is hung and restarted.
            silent = channel.silent_since
            if silent is not None and time.monotonic() - silent > HUNG_AFTER:
                self._broken(w, channel, f"{exc}; nothing for {HUNG_AFTER:g}s")
            else:
                log.warning("worker slow to answer; answering without it",
                            extra={"worker": w.index, "request": message[0], "error": str(exc)})
            return None
        except WorkerGone as exc:
            self._broken(w, channel, str(exc))
            return None

    def _spawn(self, w: Worker) -> None:
        parent_end, child_end = pair()
        argv = [sys.executable, "-m", "exporter.workers.child", str(child_end.fileno()), str(w.index),
                *self.log_args]
        env = dict(os.environ, PROBEWATCH_INIT="0")
        try:
            w.proc = subprocess.Popen(argv, pass_fds=(child_end.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            child_end.close()
        w.channel = Channel(parent_end.detach())
        w.started_at = time.monotonic()
        log.debug("worker started", extra={"worker": w.index, "pid": w.proc.pid})

    def _load(self, w: Worker) -> None:
        channel = w.channel
        if channel is None:
            return
        try:
            channel.call(("apply", w.specs), APPLY_TIMEOUT + len(w.specs) / APPLY_RATE)
        except (WorkerGone, WorkerSlow) as exc:
            self._broken(w, channel, str(exc))
            return
        w.loaded = True
        self.up.labels(str(w.index)).set(1)

    def _broken(self, w: Worker, channel: Channel, why: str) -> None:
        """The worker failed a request: kill it; the watcher restarts it."""
        if self._stop.is_set() or w.channel is not channel:
            return  # stopping, or that process was already replaced
        log.error("worker not answering; restarting it", extra={"worker": w.index, "pid": w.pid,
                                                                 "error": why})
        w.loaded = False
        self.up.labels(str(w.index)).set(0)
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            for w in self.workers:
                proc = w.proc
                if proc is None or proc.poll() is None or self._stop.is_set():
                    continue
                if time.monotonic() - w.started_at < RESTART_BACKOFF:
                    continue
                try:
                    self._restart(w)
                except Exception:  # the watcher must outlive any failure
                    log.exception("restarting a worker failed", extra={"worker": w.index})

    def _restart(self, w: Worker) -> None:
        with w.lock:
            if self._stop.is_set() or w.proc is None or w.proc.poll() is None:
                return
            log.error("worker exited; restarting it", extra={"worker": w.index, "pid": w.proc.pid,
                                                              "exit_code": w.proc.returncode})
            w.loaded = False
            self.up.labels(str(w.index)).set(0)
            self.restarts.labels(str(w.index)).inc()
            if w.channel is not None:
                w.channel.close()
            self._spawn(w)
            self._load(w)
            log.info("worker restarted", extra={"worker": w.index, "pid": w.pid, "probes": len(w.specs)})

    def _end(self, w: Worker, timeout: float) -> None:
        proc, channel = w.proc, w.channel
        if proc is None:
            return
        if channel is not None and proc.poll() is None:
            with contextlib.suppress(WorkerGone, WorkerSlow):
                channel.call(("stop",), timeout=timeout)
            channel.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        w.loaded = False
        self.up.labels(str(w.index)).set(0)
