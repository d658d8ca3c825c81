"""A probe's live state (exporter/probe_state.py), read the way a scrape reads it: its series."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.exposition import render_probes
from exporter.probe_state import SETTLE_RUNS, SETTLE_SECONDS, ProbeState
from probes.base import MESSAGE_LIMIT, Result

T0 = 1_800_000_000.0  # a Unix time; runs are placed on the time line by their start


def state(extra: str = "") -> ProbeState:
    text = f"probes:\n  - {{name: web, kind: tcp, target: '127.0.0.1:1'{extra}}}\n"
    return ProbeState(parse_config(text, "t.yml").probes[0])


def series(st: ProbeState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the probe as Prometheus parses the page, without the probe's own labels."""
    own = {"probe", "kind", "target"}
    text = b"".join(render_probes([st])).decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in own))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(st: ProbeState, name: str, **labels: str) -> float | None:
    return series(st).get((name, tuple(sorted(labels.items()))))


def names(st: ProbeState) -> set[str]:
    return {name for name, _ in series(st)}


def run(st: ProbeState, up: bool, at: float, reason: str = "refused", message: str = "",
        latency: float = 0.01) -> bool:
    result = Result.ok(0) if up else Result.fail(reason, message or f"{reason} at {at}")
    return st.record(result, latency, at)


FAILURE_ONLY = {"probewatch_probe_consecutive_failures", "probewatch_probe_consecutive_successes",
                "probewatch_probe_failure_threshold"}


def test_a_new_probe_exports_its_counters_at_zero_and_nothing_else() -> None:
    st = state()
    assert series(st) == {("probewatch_probe_runs_total", ()): 0.0,
                          ("probewatch_probe_failures_total", ()): 0.0}
    assert st.up is None


def test_the_first_run_counts_as_a_change_only_when_it_fails() -> None:
    assert run(state(), up=True, at=T0) is False
    assert run(state(), up=False, at=T0) is True


def test_up_down_changes_are_reported_and_repeats_are_not() -> None:
    st = state()
    outcomes = [True, True, False, False, True, False]
    changes = [run(st, up, T0 + 10 * i) for i, up in enumerate(outcomes)]
    assert changes == [False, False, True, False, True, True]
    assert (st.runs_total, st.failures_total) == (6, 3)
    assert value(st, "probewatch_probe_runs_total") == 6
    assert value(st, "probewatch_probe_failures_total") == 3
    assert value(st, "probewatch_probe_up") == 0


def test_streaks_count_runs_in_a_row_and_reset_on_the_other_outcome() -> None:
    st = state()
    for i in range(3):
        run(st, up=False, at=T0 + i)
    assert (st.consecutive_failures, st.consecutive_successes) == (3, 0)
    assert value(st, "probewatch_probe_consecutive_failures") == 3
    run(st, up=True, at=T0 + 3)
    assert (st.consecutive_failures, st.consecutive_successes) == (0, 1)
    assert value(st, "probewatch_probe_consecutive_failures") == 0
    assert value(st, "probewatch_probe_consecutive_successes") == 1


def test_failure_info_shows_the_streaks_first_failure_until_its_reason_changes() -> None:
    st = state()
    run(st, up=False, at=T0, reason="timeout", message="no answer in 1s")
    run(st, up=False, at=T0 + 1, reason="timeout", message="no answer in 1.2s")
    info = {labels: v for (name, labels), v in series(st).items()
            if name == "probewatch_probe_failure_info"}
    assert info == {(("message", "no answer in 1s"), ("reason", "timeout")): 1.0}
    run(st, up=False, at=T0 + 2, reason="refused", message="connection refused")
    assert value(st, "probewatch_probe_failure_info", message="connection refused",
                 reason="refused") == 1
    run(st, up=True, at=T0 + 3)
    assert "probewatch_probe_failure_info" not in names(st)  # only while the last run failed
    run(st, up=False, at=T0 + 4, reason="refused", message="refused again")
    assert value(st, "probewatch_probe_failure_info", message="refused again", reason="refused") == 1


def test_a_healthy_probe_never_exports_the_trouble_series() -> None:
    st = state()
    for i in range(5):
        run(st, up=True, at=T0 + i)
    assert not st.troubled
    assert not names(st) & FAILURE_ONLY


def test_trouble_starts_at_a_failure_and_ends_after_enough_successes_and_time() -> None:
    st = state(", failures: 4")
    run(st, up=False, at=T0)
    assert st.troubled
    assert names(st) >= FAILURE_ONLY
    assert value(st, "probewatch_probe_failure_threshold") == 4
    # SETTLE_RUNS successes in a row: the settling clock starts at the run that made the count
    for i in range(1, SETTLE_RUNS + 1):
        run(st, up=True, at=T0 + i)
    settled_from = T0 + SETTLE_RUNS + 0.01  # that run's end (start + latency)
    run(st, up=True, at=settled_from + SETTLE_SECONDS - 1.0)
    assert st.troubled, "still within the settling time"
    assert names(st) >= FAILURE_ONLY
    run(st, up=True, at=settled_from + SETTLE_SECONDS)
    assert not st.troubled
    assert not names(st) & FAILURE_ONLY
    assert value(st, "probewatch_probe_up") == 1


def test_a_failure_while_settling_starts_the_count_again() -> None:
    st = state()
    run(st, up=False, at=T0)
    for i in range(1, SETTLE_RUNS + 1):
        run(st, up=True, at=T0 + i)
    run(st, up=False, at=T0 + 100)  # the recovery did not hold
    run(st, up=True, at=T0 + 101)
    run(st, up=True, at=T0 + SETTLE_SECONDS + 50)  # second success: the clock starts here
    run(st, up=True, at=T0 + SETTLE_SECONDS + 60)
    assert st.troubled
    run(st, up=True, at=T0 + 2 * SETTLE_SECONDS + 60)
    assert not st.troubled


def test_skipped_runs_count_by_cause_and_are_no_runs() -> None:
    st = state()
    run(st, up=True, at=T0)
    st.skipped("busy")
    st.skipped("busy")
    st.skipped("late")
    assert st.skipped_total == 3
    assert value(st, "probewatch_probe_skipped_total", cause="busy") == 2
    assert value(st, "probewatch_probe_skipped_total", cause="late") == 1
    assert value(st, "probewatch_probe_runs_total") == 1
    st.skipped()  # busy unless said otherwise
    assert value(st, "probewatch_probe_skipped_total", cause="busy") == 3
    # the next run keeps the counts
    run(st, up=True, at=T0 + 10)
    assert value(st, "probewatch_probe_skipped_total", cause="busy") == 3


def test_latency_return_code_and_duration_histogram_follow_the_runs() -> None:
    st = state(", histogram: true")
    st.record(Result.ok(0), 0.004, T0)
    st.record(Result.fail("unexpected_code", "exit 3", code=3), 0.3, T0 + 10)
    assert value(st, "probewatch_probe_latency_seconds") == 0.3
    assert value(st, "probewatch_probe_return_code") == 3
    buckets = {dict(labels)["le"]: v for (name, labels), v in series(st).items()
               if name == "probewatch_probe_duration_seconds_bucket"}
    assert buckets["+Inf"] == 2
    under = [float(le) for le, count in buckets.items() if le != "+Inf" and count == 1]
    assert min(under) >= 0.004 and max(under) < 0.3
    assert value(st, "probewatch_probe_duration_seconds_count") == 2
    assert value(st, "probewatch_probe_duration_seconds_sum") == 0.304


def test_a_long_or_multi_line_message_is_cut_and_kept_on_one_line() -> None:
    st = state()
    run(st, up=False, at=T0, message="line one\nline two\t" + "x" * 10_000)
    assert st.last is not None
    message = st.last.message
    assert len(message) == MESSAGE_LIMIT and message.endswith("…")
    assert message.startswith("line one line two x")
    (info,) = [dict(labels) for (name, labels), _ in series(st).items()
               if name == "probewatch_probe_failure_info"]
    assert info["message"] == message


def test_recent_runs_keep_what_the_status_page_shows() -> None:
    st = state()
    for i in range(3):
        run(st, up=i != 1, at=T0 + i)
    recent: list[Any] = list(st.recent)
    assert [r.up for r in recent] == [True, False, True]
    assert recent[1].reason == "refused"
