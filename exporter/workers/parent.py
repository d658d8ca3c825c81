"""The exporter of ``serve --workers N`` (N >= 2): the config and HTTP here, probes in workers.

Everything the one-process Exporter does stays (config loading and its
errors, reloads by SIGHUP, file watch and /-/reload, registered probes, the
status API and page, auth and gzip): only where the probes run changes.
/metrics asks every worker for its probe families at once and joins them with
``assemble``, one header per family; /-/ready is 200 once every worker runs
its share.
"""

from __future__ import annotations

import threading
from typing import Any

from ..config import load_config
from ..exposition import assemble, merge_own
from ..metrics_route import OPENMETRICS_TYPE, TEXT_TYPE, accepts_gzip
from ..service import Exporter, Request, Response
from ..sharding import Shard
from . import trim_heap
from .gzip import members
from .merge import MergedOwn
from .pool import WorkerPool


class PoolExporter(Exporter):
    def __init__(self, config_path: str, shard: Shard | None, workers: int, log_args: list[str]) -> None:
        super().__init__(config_path, shard)
        registry = self.telemetry.registry
        # The workers' lag, skips and probe counts replace the parent's own (always 0 here).
        for metric in (self.telemetry.lag, self.telemetry.skipped, self.telemetry.probes):
            registry.unregister(metric)
        self.merged = MergedOwn()
        registry.register(self.merged)
        self.pool = WorkerPool(workers, self.shard, registry, log_args)
        self.scheduler = self.pool
        self._scrape_lock = threading.Lock()

    def start(self) -> None:
        """Start the workers, then load the config (they import while it parses)."""
        self.pool.start()
        try:
            config = load_config(self.config_path)
        except BaseException:
            self.pool.stop()
            raise
        with self._lock:
            self._install(config)
        trim_heap()
        self.ready = True

    def probe_count(self) -> int:
        return sum(len(w.specs) for w in self.pool.workers)

    def metrics(self, openmetrics: bool, gzip: bool = False) -> list[bytes]:
        """The page; with ``gzip``, as gzip members (see exporter/workers/gzip.py)."""
        # One scrape at a time: the merged telemetry belongs to the replies just read.
        with self._scrape_lock:
            replies = self.pool.scrape(gzip)
            self.merged.update(own for _, own in replies)
            parts = assemble([families for families, _ in replies], openmetrics)
            page = merge_own(parts, self.telemetry.render(openmetrics), openmetrics)
        return members(page) if gzip else page

    def _get_metrics(self, request: Request) -> Response:
        openmetrics = "application/openmetrics-text" in (request.headers.get("Accept") or "")
        compress = accepts_gzip(request.headers.get("Accept-Encoding") or "")
        body = self.metrics(openmetrics, compress)
        # Content-Encoding set here tells the server the body is already encoded.
        return Response(200, body, OPENMETRICS_TYPE if openmetrics else TEXT_TYPE,
                        headers={"Content-Encoding": "gzip"} if compress else {})

    def _get_ready(self, request: Request) -> Response:
        if self.ready and self.pool.loaded():
            return Response.text("probewatch is ready\n")
        return Response.text("probewatch is not ready: a worker is starting or restarting\n", 503)

    def worker_pids(self) -> list[int]:
        return self.pool.pids()

    def describe(self) -> dict[str, Any]:
        return {"workers": self.pool.count, "worker_pids": " ".join(map(str, self.pool.pids()))}
