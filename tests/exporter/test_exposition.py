"""Exposition: exact text for one probe, the series a healthy and a failing probe
export, and both formats parse with prometheus_client."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.config import parse_config
from exporter.exposition import assemble, merge_own, probe_families, render_probes, samples_of
from exporter.probe_state import SETTLE_SECONDS, ProbeState
from exporter.telemetry import Telemetry
from probes.base import Reading, Result
from tests.exporter.exporter_process import Running, serve

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
    assert "probewatch_probe_failure_threshold{" not in text  # only while in trouble
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
        f"probewatch_probe_failure_threshold{{{lab}}} 2",
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
    assert "probewatch_probe_duration_seconds" not in fams_om  # opt-in
    up_text = [s.value for s in fams_text["probewatch_probe_up"].samples]
    up_om = [s.value for s in fams_om["probewatch_probe_up"].samples]
    assert up_text == up_om == [0.0]


def series_of(state: ProbeState) -> list[str]:
    return [line for line in samples_of(state) if not line.startswith("#")]


def one_probe(extra: str = "", defaults: str = "") -> ProbeState:
    (spec,) = parse_config(f"{defaults}probes:\n  - {{name: p, kind: tcp, target: '127.0.0.1:9'{extra}}}\n",
                           "x.yml").probes
    return ProbeState(spec)


def test_a_healthy_probe_exports_five_series_and_a_failing_one_four_more() -> None:
    state = one_probe()
    for i in range(5):
        state.record(Result.ok(0, "fine"), 0.01, 100.0 + i)
    healthy = series_of(state)
    assert [line.split("{")[0] for line in healthy] == [
        "probewatch_probe_up", "probewatch_probe_latency_seconds", "probewatch_probe_return_code",
        "probewatch_probe_runs_total", "probewatch_probe_failures_total"]
    state.record(Result.fail("refused", "no"), 0.01, 200.0)
    failing = {line.split("{")[0] for line in series_of(state)} - {line.split("{")[0] for line in healthy}
    assert failing == {"probewatch_probe_consecutive_failures", "probewatch_probe_consecutive_successes",
                       "probewatch_probe_failure_threshold", "probewatch_probe_failure_info"}


def test_the_histogram_is_opt_in_per_probe_or_in_defaults() -> None:
    assert not [s for s in series_of(one_probe()) if "duration_seconds" in s]
    for state in (one_probe(", histogram: true"), one_probe(defaults="defaults: {histogram: true}\n")):
        state.record(Result.ok(0, "fine"), 0.2, 1.0)
        histogram = [s for s in series_of(state) if s.startswith("probewatch_probe_duration_seconds")]
        assert len(histogram) == 12  # 10 buckets, _count, _sum
        bucket = 'probewatch_probe_duration_seconds_bucket{probe="p",kind="tcp",target="127.0.0.1:9",le="0.25"}'
        assert bucket + " 1" in histogram
    (spec,) = parse_config("defaults: {histogram: true}\nprobes:\n"
                           "  - {name: p, kind: tcp, target: '127.0.0.1:9', histogram: false}\n", "x.yml").probes
    assert not spec.histogram


def test_trouble_series_stay_until_two_successes_and_the_settle_time() -> None:
    state = one_probe()
    state.record(Result.fail("refused", "no"), 0.01, 1000.0)
    state.record(Result.ok(0, "fine"), 0.01, 1010.0)
    state.record(Result.ok(0, "fine"), 0.01, 1020.0)  # 2 in a row: the rules resolve here
    assert "probewatch_probe_consecutive_successes{" in "".join(series_of(state))
    assert any(s.endswith(" 2") for s in series_of(state) if "consecutive_successes" in s)
    state.record(Result.ok(0, "fine"), 0.01, 1020.0 + SETTLE_SECONDS - 20)
    assert "probewatch_probe_failure_threshold{" in "".join(series_of(state))
    state.record(Result.ok(0, "fine"), 0.01, 1020.0 + SETTLE_SECONDS)
    assert len(series_of(state)) == 5
    # A slow probe: the run that reaches 2 successes is always scraped before they go.
    slow = one_probe()
    slow.record(Result.fail("timeout", "slow"), 0.01, 0.0)
    slow.record(Result.ok(0, "fine"), 0.01, 2 * SETTLE_SECONDS)
    slow.record(Result.ok(0, "fine"), 0.01, 4 * SETTLE_SECONDS)
    assert any(s.endswith(" 2") for s in series_of(slow) if "consecutive_successes" in s)
    slow.record(Result.ok(0, "fine"), 0.01, 6 * SETTLE_SECONDS)
    assert len(series_of(slow)) == 5


def test_failure_info_keeps_the_streaks_first_message_until_the_reason_changes() -> None:
    state = one_probe()
    for i in range(3):
        state.record(Result.fail("unexpected_code", f"exit 1 at {i}"), 0.01, float(i))
    (info,) = [s for s in series_of(state) if s.startswith("probewatch_probe_failure_info")]
    assert 'reason="unexpected_code",message="exit 1 at 0"' in info
    state.record(Result.fail("timeout", "no answer at 3"), 0.01, 3.0)
    (info,) = [s for s in series_of(state) if s.startswith("probewatch_probe_failure_info")]
    assert 'reason="timeout",message="no answer at 3"' in info
    state.record(Result.ok(0, "fine"), 0.01, 4.0)
    state.record(Result.fail("timeout", "no answer at 5"), 0.01, 5.0)  # a new streak
    (info,) = [s for s in series_of(state) if s.startswith("probewatch_probe_failure_info")]
    assert 'message="no answer at 5"' in info
    # The status API's history keeps every run's own message.
    assert [run.message for run in state.recent][-3:] == ["no answer at 3", "fine", "no answer at 5"]


def test_a_command_printing_the_time_keeps_one_failure_info_series(tmp_path: Path) -> None:
    """Issue 11's case: a command printing a timestamp and failing 10 times, scraped after
    every run, shows one failure_info series throughout (its first run's output)."""
    script = 'echo "down at $(date +%s.%N)"; exit 2'
    config = tmp_path / "probewatch.yml"
    config.write_text(
        "probes:\n"
        f"  - {{name: clock, kind: command, period: 300ms, timeout: 250ms,"
        f" command: {{argv: [sh, -c, {script!r}]}}}}\n")
    infos: set[frozenset[tuple[str, str]]] = set()
    with serve(config) as exporter:
        deadline = time.monotonic() + 30
        while (exporter.value("probewatch_probe_failures_total", probe="clock") or 0) < 10:
            assert time.monotonic() < deadline, "the command did not fail 10 times in 30s"
            infos |= {labs for (name, labs) in exporter.samples() if name == "probewatch_probe_failure_info"}
            time.sleep(0.1)
        messages = {m["message"] for m in exporter_runs(exporter)}
    assert len(infos) == 1, infos
    (labels,) = infos
    assert dict(labels)["reason"] == "unexpected_code"
    assert "down at " in dict(labels)["message"]
    assert len(messages) >= 10, "the command's output did change from run to run"


def exporter_runs(exporter: Running) -> list[dict[str, str]]:
    status, body, _ = exporter.get("/api/v1/probes/clock")
    assert status == 200, body
    return list(json.loads(body)["runs"])


def test_families_of_two_shards_assemble_under_one_header_each() -> None:
    """What worker processes' probe sets merge into: each family once, every sample kept."""
    config = """
probes:
  - {name: a, kind: tcp, target: "127.0.0.1:80"}
  - {name: b, kind: tcp, target: "127.0.0.1:81"}
"""
    a, b = (ProbeState(spec) for spec in parse_config(config, "x.yml").probes)
    a.record(Result.ok(readings=[Reading("probewatch_probe_value", 3, "A value.")]), 0.001, 1.0)
    b.record(Result.fail("refused", "no"), 0.001, 1.0)
    merged = b"".join(assemble([probe_families([a]), probe_families([b])])).decode()
    single = render([a, b])
    assert sorted(merged.splitlines()) == sorted(single.splitlines())
    assert merged.count("# TYPE probewatch_probe_up gauge") == 1
    assert merged.count("# HELP probewatch_probe_value ") == 1
    families = {f.name: f.samples for f in parse_text(merged)}
    assert {s.labels["probe"] for s in families["probewatch_probe_up"]} == {"a", "b"}


def test_a_healthy_repeat_run_renders_exactly_what_a_full_render_gives() -> None:
    # ProbeState.record re-renders only runs_total and the latency after a run like
    # the last one; the text must be the same as rendering everything again.
    from exporter.exposition import render_probe

    web = states()[0]
    for i, (result, latency) in enumerate([(Result.ok(0, "connected"), 0.25), (Result.ok(0, "connected"), 0.5),
                                           (Result.fail("refused", "no"), 0.125),
                                           (Result.ok(0, "connected"), 0.75), (Result.ok(0, "connected"), 1.5)]):
        web.record(result, latency, time.time())
        assert web.lines == render_probe(web), f"after run {i + 1}"
    assert f"probewatch_probe_runs_total{{{web.labels.text}}} 5\n" in render([web])
    assert f"probewatch_probe_latency_seconds{{{web.labels.text}}} 1.5\n" in render([web])


def test_the_scheduler_lag_histogram_parses_and_counts_every_observation() -> None:
    telemetry = Telemetry()
    telemetry.lag.observe_many(0.003, 10)  # one slot of ten probes
    telemetry.lag.observe(0.2)
    families = {f.name: f for f in parse_text(telemetry.render(False).decode())}
    samples = {(s.name, s.labels.get("le")): s.value for s in families["probewatch_scheduler_lag_seconds"].samples}
    assert samples[("probewatch_scheduler_lag_seconds_bucket", "0.001")] == 0
    assert samples[("probewatch_scheduler_lag_seconds_bucket", "0.005")] == 10
    assert samples[("probewatch_scheduler_lag_seconds_bucket", "+Inf")] == 11
    assert samples[("probewatch_scheduler_lag_seconds_count", None)] == 11
    assert abs(samples[("probewatch_scheduler_lag_seconds_sum", None)] - 0.23) < 1e-9
    assert "probewatch_scheduler_lag_seconds" in {f.name for f in parse_om(telemetry.render(True).decode())}
