"""The exporter's own series, kept in a prometheus_client registry."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from . import __version__

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LagHistogram:
    """probewatch_scheduler_lag_seconds, counted without a lock.

    Only the scheduler's loop thread observes, once per slot for all the probes
    started in it (``observe_many``), so a prometheus_client Histogram (a lock
    and a bucket search per observation) is more than it needs.  A scrape reads
    the counts as they are; a count read mid-update is off by one slot at most.
    """

    name = "probewatch_scheduler_lag_seconds"
    documentation = "How late probe runs started against their schedule."

    def __init__(self, buckets: tuple[float, ...] = LAG_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf only
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.observe_many(value, 1)

    def observe_many(self, value: float, count: int) -> None:
        """``count`` observations of the same ``value`` (the probes of one slot)."""
        self.counts[bisect.bisect_left(self.buckets, value)] += count
        self.sum += value * count

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        cumulative, out = 0, []
        for bound, count in zip((*self.buckets, float("inf")), list(self.counts), strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=out, sum_value=self.sum)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.reload_ok = Gauge(
            "probewatch_config_last_reload_successful",
            "1 if the last configuration load succeeded.", registry=r)
        self.reload_ok_at = Gauge(
            "probewatch_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.", registry=r)
        self.lag = LagHistogram()
        r.register(self.lag)
        self.skipped = Counter(
            "probewatch_skipped_runs",
            "Probe runs not started, all probes together: cause busy (the previous run of the "
            "probe was still going) or late (the exporter could not start it near its slot).",
            ["cause"], registry=r)
        for cause in ("busy", "late"):
            self.skipped.labels(cause)  # both present from start at 0, for increase()
        self.probes = Gauge(
            "probewatch_probes", "Configured probes by state.", ["state"], registry=r)
        self.shard = Info("probewatch_shard", "Which shard of the probes this exporter runs.", registry=r)
        self.shard.info({"shard": "0", "shards": "1"})
        Info("probewatch_build", "probewatch version.", registry=r).info({"version": __version__})

    def render(self, openmetrics: bool) -> bytes:
        return generate_openmetrics(self.registry) if openmetrics else generate_latest(self.registry)
