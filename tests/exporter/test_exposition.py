"""Exposition: exact text for one probe, and both formats parse with prometheus_client."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.config import parse_config
from exporter.exposition import merge_own, render_probes
from exporter.state import ProbeState
from exporter.telemetry import Telemetry
from probes.base import Reading, Result

CONFIG = """
probes:
  - {name: web, kind: tcp, target: "127.0.0.1:80", period: 10s, timeout: 1s, failures: 2,
     labels: {group: "front \\"end\\""}}
  - {name: idle, kind: tcp, target: "127.0.0.1:81", active: false}
"""


def render(states: list[ProbeState], openmetrics: bool = False) -> str:
    return b"".join(render_probes(states, openmetrics)).decode()


def states() -> list[ProbeState]:
    return [ProbeState(spec) for spec in parse_config(CONFIG, "x.yml").probes]


def test_before_the_first_run_counters_exist_at_zero_and_up_does_not() -> None:
    text = render(states())
    lab = 'probe="web",kind="tcp",target="127.0.0.1:80",group="front \\"end\\""'
    assert f"probewatch_probe_runs_total{{{lab}}} 0\n" in text
    assert f"probewatch_probe_failures_total{{{lab}}} 0\n" in text
    assert f"probewatch_probe_failure_threshold{{{lab}}} 2\n" in text
    assert "probewatch_probe_up{" not in text
    assert 'probe="idle"' not in text  # inactive probes export nothing


def test_failed_run_exact_lines() -> None:
    web, idle = states()
    web.record(Result.fail("refused", 'connection "refused"\nreally'), 0.002, 1700000000.0)
    text = render([web, idle])
    lab = 'probe="web",kind="tcp",target="127.0.0.1:80",group="front \\"end\\""'
    for line in (
        "# TYPE probewatch_probe_up gauge",
        f"probewatch_probe_up{{{lab}}} 0",
        f"probewatch_probe_return_code{{{lab}}} -1",
        f"probewatch_probe_runs_total{{{lab}}} 1",
        f"probewatch_probe_failures_total{{{lab}}} 1",
        f"probewatch_probe_consecutive_failures{{{lab}}} 1",
        f"probewatch_probe_consecutive_successes{{{lab}}} 0",
        f'probewatch_probe_duration_seconds_bucket{{{lab},le="0.005"}} 1',
        f"probewatch_probe_duration_seconds_count{{{lab}}} 1",
        "# TYPE probewatch_probe_failure_info gauge",
        f'probewatch_probe_failure_info{{{lab},reason="refused",message="connection \\"refused\\" really"}} 1',
    ):
        assert line + "\n" in text, line


def test_failure_info_disappears_when_up_and_readings_appear() -> None:
    web, _ = states()
    web.record(Result.fail("timeout", "slow"), 1.0, 1.0)
    web.record(Result.ok(0, "fine", readings=[
        Reading("probewatch_probe_value", 0.5, "A value.", (("field", "load1"),))]), 0.1, 2.0)
    text = render([web])
    assert "probewatch_probe_failure_info" not in text
    assert "probewatch_probe_consecutive_successes{" in text
    assert 'field="load1"} 0.5\n' in text


def test_both_formats_parse_and_agree() -> None:
    web, idle = states()
    web.record(Result.fail("refused", "no"), 0.01, 1.0)
    tel = Telemetry()
    text = b"".join(merge_own(render_probes([web, idle]), tel.render(False), False)).decode()
    om = b"".join(merge_own(render_probes([web, idle], True), tel.render(True), True)).decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    fams_text = {f.name: f for f in parse_text(text)}
    fams_om = {f.name: f for f in parse_om(om)}
    assert fams_text["probewatch_probe_runs"].type == "counter"
    assert fams_om["probewatch_probe_runs"].type == "counter"
    assert fams_om["probewatch_probe_failure"].type == "info"
    assert fams_om["probewatch_probe_duration_seconds"].type == "histogram"
    up_text = [s.value for s in fams_text["probewatch_probe_up"].samples]
    up_om = [s.value for s in fams_om["probewatch_probe_up"].samples]
    assert up_text == up_om == [0.0]
