"""The running exporter: config, scheduler, reloads and the core HTTP routes."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .config import Config, ConfigError, ProbeSpec, decode_config, load_config, read_config_bytes
from .exposition import merge_own, render_probes
from .metrics_route import metrics_response
from .probe_state import ProbeState
from .routing import Request, Response, Router
from .scheduler import Scheduler
from .sharding import Shard
from .telemetry import Telemetry

log = logging.getLogger("probewatch")

# A changed config file is applied once two reads this far apart agree.
WATCH_SETTLE = 0.5
WATCH_SETTLE_ROUNDS = 10


class Runner(Protocol):
    """What runs the probes: the Scheduler in this process, or serve --workers' WorkerPool."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def apply(self, specs: list[ProbeSpec]) -> None: ...
    def states(self) -> list[ProbeState]: ...
    def state(self, name: str) -> ProbeState | None: ...


class Exporter:
    """Owns the loaded config and the scheduler; reloads replace the probe set atomically."""

    def __init__(self, config_path: str, shard: Shard | None = None) -> None:
        self.config_path = config_path
        self.shard = shard or Shard()
        self.telemetry = Telemetry()
        self.telemetry.shard.info({"shard": str(self.shard.index), "shards": str(self.shard.count)})
        self.scheduler: Runner = Scheduler(self.telemetry)
        self.config: Config | None = None
        self.ready = False
        # Serializes reloads and API registrations so the last change is the last applied.
        self._lock = threading.RLock()
        self._file_digest = ""
        self._stop = threading.Event()
        # Other sources of probes (the status API's registered probes): add_probe_source.
        self._probe_sources: list[Callable[[], list[ProbeSpec]]] = []
        # POST/PUT /-/reload answer 403 unless serve runs with --web.enable-lifecycle.
        self.lifecycle = False

    # -- loading -------------------------------------------------------------
    def start(self) -> None:
        """Load the config (raising ConfigError) and start running probes."""
        config = load_config(self.config_path)
        self.scheduler.start()
        with self._lock:
            self._install(config)
        self.ready = True

    def reload(self, data: bytes | None = None) -> list[str]:
        """Re-read the config file (or apply ``data``, its content as read); return its
        problems (empty on success)."""
        with self._lock:
            try:
                if data is None:
                    try:
                        data = read_config_bytes(self.config_path)
                    except OSError:
                        data = None
                if data is None:
                    config = load_config(self.config_path)  # raises with the reason
                else:
                    # What was tried, good or bad: the watcher acts on the next change,
                    # and a restored good file differs from a failed one, so it reloads.
                    self._file_digest = hashlib.sha256(data).hexdigest()
                    config = decode_config(data, self.config_path)
            except ConfigError as exc:
                self.telemetry.reload_ok.set(0)
                for problem in exc.problems:
                    log.error("config reload failed", extra={"problem": str(problem)})
                return [str(p) for p in exc.problems]
            try:
                self._install(config, data)
            except Exception as exc:  # a reload never takes the exporter down
                self.telemetry.reload_ok.set(0)
                self._file_digest = ""  # the watcher tries again next interval
                log.exception("config reload failed", extra={"problem": repr(exc)})
                return [f"the config could not be applied: {exc!r}"]
            log.info("config reloaded", extra={"probes": len(config.probes)})
            return []

    def _install(self, config: Config, data: bytes | None = None) -> None:
        self.config = config
        self.apply()
        self._file_digest = hashlib.sha256(data).hexdigest() if data is not None else _digest(self.config_path)
        self.telemetry.reload_ok.set(1)
        self.telemetry.reload_ok_at.set(time.time())

    def apply(self) -> None:
        """Hand the scheduler every probe of this shard: the file's, then the others'."""
        with self._lock:
            assert self.config is not None
            specs = {p.name: p for p in self.config.probes}
            for source in self._probe_sources:
                for spec in source():
                    specs.setdefault(spec.name, spec)
            self.scheduler.apply([s for s in specs.values() if self.shard.owns(s.name)])

    def add_probe_source(self, source: Callable[[], list[ProbeSpec]]) -> None:
        """Merge ``source()``'s probes after the config file's at every apply (a name the
        file already has keeps the file's probe), from the next apply on."""
        with self._lock:
            self._probe_sources.append(source)

    # -- watching ------------------------------------------------------------
    def watch(self, interval: float, settle: float = WATCH_SETTLE) -> None:
        """Reload when the config file's content changes (ConfigMap updates included).

        A change is applied only once the content is stable: read again after
        ``settle`` seconds, it must be the same bytes (so a file truncated and
        then written, as ``>`` and many editors do, is not applied half-way),
        and it must parse whole (else the old config keeps running and
        probewatch_config_last_reload_successful is 0 until a good file comes).
        Nothing that goes wrong in one round stops the thread.
        """
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self._watch_once(settle)
                except Exception:  # the watcher must outlive any failure
                    log.exception("config watch round failed; watching on")
        threading.Thread(target=loop, name="config-watch", daemon=True).start()

    def _watch_once(self, settle: float) -> None:
        data = _read(self.config_path)
        if data is None or hashlib.sha256(data).hexdigest() == self._file_digest:
            return
        # Re-read until two reads agree (bounded: a file rewritten without pause
        # for longer than this is tried again next interval).
        for _ in range(WATCH_SETTLE_ROUNDS):
            if self._stop.wait(settle):
                return
            again = _read(self.config_path)
            if again is None:
                return
            if again == data:
                break
            data = again
        else:
            return
        log.info("config file changed", extra={"file": self.config_path})
        self.reload(data)

    def stop(self) -> None:
        self._stop.set()
        self.ready = False
        self.scheduler.stop()

    def probe_count(self) -> int:
        """Probes this instance runs (its shard's, registered ones included)."""
        return len(self.scheduler.states())

    # -- HTTP ----------------------------------------------------------------
    def metrics(self, openmetrics: bool) -> list[bytes]:
        parts = render_probes(self.scheduler.states(), openmetrics)
        return merge_own(parts, self.telemetry.render(openmetrics), openmetrics)

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/metrics", self._get_metrics)
        router.add("GET", "/-/healthy", lambda r: Response.text("probewatch is healthy\n"))
        router.add("GET", "/-/ready", self._get_ready)
        router.add("POST", "/-/reload", self._post_reload)
        router.add("PUT", "/-/reload", self._post_reload)

    def _get_metrics(self, request: Request) -> Response:
        return metrics_response(request, self.metrics)

    def _get_ready(self, request: Request) -> Response:
        if self.ready:
            return Response.text("probewatch is ready\n")
        return Response.text("probewatch is not ready\n", 503)

    def _post_reload(self, request: Request) -> Response:
        if not self.lifecycle:
            return Response.text("reloading over HTTP is off: start probewatch with "
                                 "--web.enable-lifecycle (SIGHUP and the file watch reload too)\n", 403)
        problems = self.reload()
        if problems:
            return Response.text("config not reloaded; the old config keeps running:\n"
                                 + "\n".join(problems) + "\n", 400)
        return Response.text("config reloaded\n")


def _read(path: str) -> bytes | None:
    try:
        return read_config_bytes(path)
    except OSError:
        return None


def _digest(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return ""
