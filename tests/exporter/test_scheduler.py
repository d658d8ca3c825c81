"""The scheduler with real probes: periods, timeouts, errors, skips and spreading."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
import time
from typing import Any, ClassVar

import pytest

from exporter import scheduler as scheduler_module
from exporter.config import parse_config
from exporter.scheduler import EARLY_RUNS_PER_SECOND, FIRST_RUN_SPREAD, Scheduler, early_spread, phase
from exporter.telemetry import Telemetry
from probes import registry
from probes.base import Kind, Result


@dataclasses.dataclass
class _Opts:
    delay: float = 0.0
    fail_with: str = ""


class _TestKind(Kind):
    """A kind used only by these tests: sleeps ``delay`` and can raise."""

    Options = _Opts
    starts: ClassVar[dict[str, list[float]]] = {}

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    async def run(self, deadline: float) -> Result:
        self.starts.setdefault(self.spec.name, []).append(time.monotonic())
        await asyncio.sleep(self.spec.options.delay)
        if self.spec.options.fail_with:
            raise RuntimeError(self.spec.options.fail_with)
        return Result.ok(0)


@pytest.fixture
def scheduler():
    _TestKind.starts = {}
    with registry.registered("testkind", _TestKind):
        sched = Scheduler(Telemetry())
        sched.start()
        yield sched
        sched.stop()


def specs(text: str):
    return parse_config(text, "t.yml").probes


# Two probes of the test kind, every 100 ms.
TWO_FAST = """
probes:
  - {name: a, kind: testkind, target: x, period: 100ms, timeout: 50ms}
  - {name: b, kind: testkind, target: x, period: 100ms, timeout: 50ms}
"""


def wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_exception_is_a_failed_run_with_reason_error_and_the_loop_goes_on(scheduler) -> None:
    scheduler.apply(specs("""
probes:
  - {name: boom, kind: testkind, target: x, period: 200ms, timeout: 100ms, testkind: {fail_with: kaput}}
"""))
    wait(lambda: (s := scheduler.state("boom")) is not None and s.runs_total >= 3)
    state = scheduler.state("boom")
    assert state.last.reason == "error"
    assert state.last.message == "RuntimeError: kaput"
    assert state.failures_total == state.runs_total


def test_hung_probe_is_cut_at_timeout_and_never_delays_another(scheduler) -> None:
    scheduler.apply(specs("""
probes:
  - {name: hung, kind: testkind, target: x, period: 1s, timeout: 300ms, testkind: {delay: 60}}
  - {name: quick, kind: testkind, target: x, period: 100ms, timeout: 50ms}
"""))
    wait(lambda: scheduler.state("hung").runs_total >= 1)
    assert scheduler.state("hung").last.reason == "timeout"
    quick = _TestKind.starts["quick"]
    gaps = [b - a for a, b in itertools.pairwise(quick)]
    assert len(gaps) >= 3 and max(gaps) < 0.2, gaps


def test_run_still_going_is_skipped_not_doubled(scheduler) -> None:
    # timeout < period is enforced by config, so overrun a period by blocking the
    # probe in a way the timeout cannot cut: swallow cancellation once.
    class Stubborn(_TestKind):
        async def run(self, deadline: float) -> Result:
            self.starts.setdefault(self.spec.name, []).append(time.monotonic())
            try:
                await asyncio.sleep(0.35)
            except asyncio.CancelledError:
                await asyncio.sleep(0.35)
                raise
            return Result.ok(0)

    registry.register("testkind", Stubborn)  # the fixture's `registered` block undoes it
    scheduler.apply(specs("""
probes:
  - {name: slow, kind: testkind, target: x, period: 200ms, timeout: 150ms}
"""))
    wait(lambda: scheduler.state("slow").skipped_total >= 2)
    scheduler.state("slow")
    starts = _TestKind.starts["slow"]
    assert all(b - a > 0.3 for a, b in itertools.pairwise(starts)), starts


def test_periods_hold_and_reload_keeps_unchanged_probes(scheduler) -> None:
    scheduler.apply(specs(TWO_FAST))
    wait(lambda: scheduler.state("a").runs_total >= 5)
    a_before = scheduler.state("a")
    scheduler.apply(specs(TWO_FAST.replace("name: b, kind: testkind, target: x",
                                       "name: b, kind: testkind, target: y")))
    assert scheduler.state("a") is a_before
    assert scheduler.state("b").runs_total <= 1
    scheduler.apply(specs("probes: []"))
    assert scheduler.states() == []


def test_first_runs_are_spread_over_the_period() -> None:
    offsets = sorted(phase(f"probe-{i}", 10.0) for i in range(10000))
    assert offsets[0] >= 0 and offsets[-1] < 10
    # roughly uniform: each tenth of the period holds about a tenth of the probes
    for k in range(10):
        share = sum(1 for o in offsets if k <= o < k + 1) / len(offsets)
        assert 0.08 < share < 0.12, (k, share)
    assert phase("same", 10.0) == phase("same", 10.0)


def test_a_probe_raising_on_every_run_logs_once_then_a_count(scheduler, caplog) -> None:
    from exporter import scheduler as scheduler_module

    with caplog.at_level("ERROR", logger="probewatch.scheduler"):
        scheduler.apply(specs("""
probes:
  - {name: noisy, kind: testkind, target: x, period: 100ms, timeout: 50ms, testkind: {fail_with: kaput}}
"""))
        wait(lambda: (s := scheduler.state("noisy")) is not None and s.runs_total >= 6)
        runs = scheduler.state("noisy").runs_total
        scheduler_module._raised.close()  # as stop() does: the pending count, without waiting 10s
    raised = [r for r in caplog.records if r.getMessage() == "probe raised"]
    assert len(raised) == 1 and raised[0].error == "RuntimeError: kaput"
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("probe noisy raised ")]
    assert len(summary) == 1, summary
    counted = int(summary[0].split(" raised ")[1].split(" more")[0])
    assert summary[0].startswith("probe noisy raised ") and runs - 1 <= counted <= runs + 2


@pytest.fixture
def tcp_scheduler():
    sched = Scheduler(Telemetry())
    sched.start()
    yield sched
    sched.stop()


def test_plain_tcp_probes_run_from_the_wheel_up_refused_and_cut_at_their_timeout(tcp_scheduler) -> None:
    # Plain connects to addresses take the callback fast path (no task per run);
    # the wheel cuts the one whose handshake never completes at its timeout.
    from tests.probes.servers import TcpServer, closed_port

    server = TcpServer(lambda conn: b"")
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)  # one handshake queued, never accepted: the next SYNs go unanswered
    filler = socket.create_connection(stuck.getsockname())
    try:
        tcp_scheduler.apply(specs(f"""
probes:
  - {{name: up, kind: tcp, target: "{server.target}", period: 200ms, timeout: 100ms}}
  - {{name: refused, kind: tcp, target: "127.0.0.1:{closed_port()}", period: 200ms, timeout: 100ms}}
  - {{name: stuck, kind: tcp, target: "127.0.0.1:{stuck.getsockname()[1]}", period: 500ms, timeout: 300ms}}
"""))
        wait(lambda: all((s := tcp_scheduler.state(n)) is not None and s.runs_total >= 3
                         for n in ("up", "refused", "stuck")), timeout=10)
        up, refused, cut = (tcp_scheduler.state(n) for n in ("up", "refused", "stuck"))
        assert up.failures_total == 0 and up.last.message == f"connected to {server.target}"
        assert refused.last.reason == "refused" and refused.failures_total == refused.runs_total
        assert cut.last.reason == "timeout" and cut.last.message == "no result within 300ms"
        # cut at the deadline, rounded up to the wheel's 10 ms slot, not much later
        latencies = [r.latency for r in cut.recent]
        assert all(0.29 <= lat < 0.45 for lat in latencies), latencies
        assert sum(s.skipped_total for s in (up, refused, cut)) == 0
    finally:
        filler.close()
        stuck.close()
        server.close()


def test_every_run_started_or_skipped_is_one_lag_observation(scheduler) -> None:
    # 200 probes share 10 ms slots: one timer a slot starts them all, and the lag
    # histogram still counts each run.
    lines = "\n".join(f"  - {{name: p{i}, kind: testkind, target: x, period: 100ms, timeout: 50ms}}"
                      for i in range(200))
    scheduler.apply(specs("probes:\n" + lines))
    wait(lambda: min(s.runs_total for s in scheduler.states()) >= 5, timeout=10)
    scheduler.apply(specs("probes: []"))
    time.sleep(0.2)
    counts = scheduler.telemetry.lag.counts
    started = sum(len(v) for v in _TestKind.starts.values())
    assert started >= 1000
    assert sum(counts) >= started - 200  # the early first runs are not slots: not observed
    assert sum(counts) <= started + 200


def test_early_first_runs_keep_to_their_budget_and_reach_every_probe(scheduler, monkeypatch) -> None:
    # 600 new probes with slots an hour away: each runs once early.  At 200 early
    # runs a second they are spread over 3 s (not all in FIRST_RUN_SPREAD's 3 s at
    # once, which is what made 100,000 probes' start fall behind their slots).
    monkeypatch.setattr(scheduler_module, "EARLY_RUNS_PER_SECOND", 200.0)
    lines = "\n".join(f"  - {{name: p{i}, kind: testkind, target: x, period: 1h}}" for i in range(600))
    t0 = time.monotonic()
    scheduler.apply(specs("probes:\n" + lines))
    wait(lambda: len(_TestKind.starts) >= 300, timeout=10)
    half = time.monotonic() - t0
    wait(lambda: min(s.runs_total for s in scheduler.states()) >= 1, timeout=10)
    every = time.monotonic() - t0
    assert half >= 1.0, f"half of the early runs came {half:.2f}s after the start: not spread"
    assert every < 6.0, f"every probe had run only {every:.2f}s after the start"
    # Once early, then at its slot: a second run only for the few whose slot has come.
    slot_came = sum(1 for i in range(600) if phase(f"p{i}", 3600) < time.monotonic() - t0 + 0.5)
    assert sum(len(v) for v in _TestKind.starts.values()) <= 600 + slot_came


def test_early_spread_grows_with_the_new_probes_past_its_minimum() -> None:
    assert early_spread(0) == FIRST_RUN_SPREAD
    assert early_spread(100) == FIRST_RUN_SPREAD
    assert early_spread(int(EARLY_RUNS_PER_SECOND * 10)) == pytest.approx(10.0)


def test_reload_keeps_a_probe_whose_definition_reads_the_same_and_restarts_a_changed_one(scheduler) -> None:
    scheduler.apply(specs(TWO_FAST))
    wait(lambda: scheduler.state("a").runs_total >= 3 and scheduler.state("b").runs_total >= 3)
    a_before, b_before = scheduler.state("a"), scheduler.state("b")
    again = specs(TWO_FAST)
    # A period a hair longer shows as the same 100ms (the fingerprint judges it); a changed
    # option is another probe.
    again[0] = dataclasses.replace(again[0], period=0.1000000001)
    again[1] = dataclasses.replace(again[1], options=_Opts(delay=0.001))
    scheduler.apply(again)
    assert scheduler.state("a") is a_before and a_before.runs_total >= 3
    assert scheduler.state("b") is not b_before
    assert scheduler.state("b").runs_total <= 1
