"""The workers' own series, merged into the parent's: summed, not labelled by worker.

Each worker has its own Telemetry; the parent's /metrics shows one
probewatch_scheduler_lag_seconds histogram, one probewatch_skipped_runs_total
and one probewatch_probes, each the sum over the workers (bucket by bucket for
the histogram), so the shipped rules and dashboards read the same series as
with one process.  A counter's ``_created`` is the earliest worker's.  What
differs per worker (up, restarts, CPU, memory) is in the ``probewatch_worker_*``
series, which carry a ``worker`` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

OWN = ("probewatch_scheduler_lag_seconds", "probewatch_skipped_runs", "probewatch_probes")


def merge_families(per_worker: Iterable[list[Metric]]) -> list[Metric]:
    """Families of the same name summed sample by sample (``_created``: the minimum)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in per_worker:
        for fam in families:
            if fam.name not in merged:
                merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            into = values[fam.name]
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in into:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(into[key], sample.value)
                else:
                    into[key] += sample.value
    for name, fam in merged.items():
        fam.samples = [Sample(n, dict(labels), v) for (n, labels), v in values[name].items()]
    return [merged[name] for name in OWN if name in merged]


class MergedOwn(Collector):
    """A collector for the parent's registry: the last scrape's merged worker families."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def update(self, per_worker: Iterable[list[Metric]]) -> None:
        self.families = merge_families(per_worker)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)

    def describe(self) -> Iterator[Any]:
        return iter(())
