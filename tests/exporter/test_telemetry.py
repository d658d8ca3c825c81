"""The exporter's own series (exporter/telemetry.py), as Prometheus parses them, alone and in /metrics."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import __version__
from exporter.telemetry import LAG_BUCKETS, Telemetry
from tests.exporter.exporter_process import serve
from tests.support import wait_for

OWN = {"probewatch_config_last_reload_successful", "probewatch_config_last_reload_success_timestamp_seconds",
       "probewatch_scheduler_lag_seconds", "probewatch_skipped_runs", "probewatch_probes",
       "probewatch_shard_info", "probewatch_build_info"}


def samples(text: str, openmetrics: bool = False) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    parse = parse_openmetrics if openmetrics else parse_text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parse(text) for s in family.samples}


def test_every_own_family_is_there_with_help_from_the_start() -> None:
    text = Telemetry().render(openmetrics=False).decode()
    families = {f.name: f for f in parse_text(text)}
    assert set(families) >= OWN | {"process_cpu_seconds", "python_info"}
    assert all(families[name].documentation for name in OWN)
    got = samples(text)
    # both causes at 0 from the start, so increase() sees the first skip
    assert got[("probewatch_skipped_runs_total", frozenset({("cause", "busy")}))] == 0
    assert got[("probewatch_skipped_runs_total", frozenset({("cause", "late")}))] == 0
    assert got[("probewatch_build_info", frozenset({("version", __version__)}))] == 1
    assert got[("probewatch_shard_info", frozenset({("shard", "0"), ("shards", "1")}))] == 1


def test_what_the_exporter_sets_is_what_a_scrape_reads() -> None:
    telemetry = Telemetry()
    telemetry.reload_ok.set(1)
    telemetry.reload_ok_at.set(1_800_000_000)
    for lag in (0.0005, 0.02, 30.0):
        telemetry.lag.observe(lag)
    telemetry.skipped.labels("late").inc(3)
    telemetry.probes.labels("active").set(7)
    got = samples(telemetry.render(openmetrics=False).decode())
    assert got[("probewatch_config_last_reload_successful", frozenset())] == 1
    assert got[("probewatch_config_last_reload_success_timestamp_seconds", frozenset())] == 1.8e9
    buckets = {dict(labels)["le"]: v for (name, labels), v in got.items()
               if name == "probewatch_scheduler_lag_seconds_bucket"}
    assert len(buckets) == len(LAG_BUCKETS) + 1
    assert (buckets["0.001"], buckets["0.025"], buckets["10.0"], buckets["+Inf"]) == (1, 2, 2, 3)
    assert got[("probewatch_skipped_runs_total", frozenset({("cause", "late")}))] == 3
    assert got[("probewatch_probes", frozenset({("state", "active")}))] == 7


def test_openmetrics_rendering_parses_and_ends_with_eof() -> None:
    telemetry = Telemetry()
    telemetry.skipped.labels("busy").inc()
    text = telemetry.render(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    got = samples(text, openmetrics=True)
    assert got[("probewatch_skipped_runs_total", frozenset({("cause", "busy")}))] == 1


def test_a_running_exporter_serves_its_own_series_beside_the_probes(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("""
probes:
  - {name: here, kind: command, target: local, period: 200ms, timeout: 100ms,
     command: {argv: ["true"]}}
  - {name: idle, kind: command, target: local, active: false, command: {argv: ["true"]}}
""")
    before = time.time()
    with serve(config) as pw:
        wait_for(lambda: (pw.value("probewatch_probe_runs_total", probe="here") or 0) >= 3,
                 timeout=15, what="three runs")
        got = pw.samples()
    assert got[("probewatch_config_last_reload_successful", frozenset())] == 1
    loaded_at = got[("probewatch_config_last_reload_success_timestamp_seconds", frozenset())]
    assert before - 1 <= loaded_at <= time.time()
    assert got[("probewatch_probes", frozenset({("state", "active")}))] == 1
    assert got[("probewatch_probes", frozenset({("state", "inactive")}))] == 1
    assert got[("probewatch_scheduler_lag_seconds_count", frozenset())] >= 3
    assert got[("probewatch_build_info", frozenset({("version", __version__)}))] == 1
    assert got[("process_resident_memory_bytes", frozenset())] > 0
