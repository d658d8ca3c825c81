"""No probe's result depends on another probe or on the exporter's load.

Real kinds on the real scheduler, against real loopback peers (ports chosen at
run time): silent listeners that take connections and never answer, a healthy
HTTP server, sipp, hanging commands, and an event loop slowed on purpose.
Each scenario runs for a bounded time (20 s at most) and then stops what it started.
"""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import parse_config
from exporter.probe_state import ProbeState
from exporter.scheduler import Scheduler, late_bound
from exporter.telemetry import Telemetry
from tests.probes.test_http import LoopbackServer, serving
from tests.probes.test_sip import sipp
from tests.support import pid_running

PERIOD, TIMEOUT = "2s", "1.5s"
SECONDS = 20.0


@contextmanager
def silent_listener() -> Iterator[int]:
    """Completes TCP handshakes (a large backlog) and never reads or answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    with serving() as server:
        yield server


def probe(name: str, kind: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "target": target, "period": PERIOD,
            "timeout": TIMEOUT, **extra}


def hanging_http(silent_port: int, count: int = 300) -> list[dict[str, Any]]:
    return [probe(f"hang-{i}", "http", f"http://127.0.0.1:{silent_port}/never")
            for i in range(count)]


def healthy_web(web: LoopbackServer) -> list[dict[str, Any]]:
    port = web.server_address[1]
    return ([probe(f"web-{i}", "http", f"{web.base}/ok") for i in range(50)]
            + [probe(f"status-{i}", "json", f"{web.base}/megaphone/OK") for i in range(20)]
            + [probe(f"tcp-{i}", "tcp", f"127.0.0.1:{port}") for i in range(10)])


@contextmanager
def scheduling(probes: list[dict[str, Any]]) -> Iterator[Scheduler]:
    telemetry = Telemetry()
    sched = Scheduler(telemetry)
    sched.start()
    try:
        sched.apply(parse_config(yaml.safe_dump({"probes": probes}), "isolation.yml").probes)
        yield sched
    finally:
        sched.stop()


def healthy_report(states: list[ProbeState]) -> list[str]:
    """What a user would see as wrong about probes whose targets are healthy."""
    out = []
    for s in states:
        if s.failures_total or s.skipped_total:
            last = s.last
            out.append(f"{s.spec.name}: {s.failures_total} failed, {s.skipped_by_cause} skipped, "
                       f"last {last.reason if last else '-'}: {last.message if last else ''}")
    return out


def runs_expected(seconds: float, period: float = 2.0) -> int:
    """Runs (or counted skips) each probe must have in ``seconds``: two periods of margin."""
    return int(seconds / period) - 2


def assert_isolated(sched: Scheduler, healthy_prefixes: tuple[str, ...], starved: float) -> None:
    states = sched.states()
    healthy = [s for s in states if s.spec.name.startswith(healthy_prefixes)]
    failed = [line for line in healthy_report(healthy) if " 0 failed," not in line]
    assert healthy and failed == []
    assert min(s.runs_total + s.skipped_total for s in healthy) >= runs_expected(SECONDS)
    hanging = [s for s in states if s.spec.name.startswith("hang-")]
    assert hanging and all(s.last is not None and s.last.reason == "timeout" for s in hanging)
    assert min(s.runs_total + s.skipped_total for s in hanging) >= runs_expected(SECONDS)
    assert_no_skips(sched, states, starved)


def cpu_wait(sched: Scheduler) -> float:
    """Seconds the scheduler's thread has spent runnable but waiting for a CPU (schedstat)."""
    assert sched._thread is not None and sched._thread.native_id is not None
    with open(f"/proc/self/task/{sched._thread.native_id}/schedstat") as fh:
        return int(fh.read().split()[1]) / 1e9


def assert_no_skips(sched: Scheduler, states: list[ProbeState], starved: float) -> None:
    """No run skipped, unless this (shared) machine kept the exporter off the CPU.

    ``starved``: the share of the scenario the scheduler's thread spent
    waiting for a CPU, read from the kernel, not from probewatch.  A late skip
    is the exporter saying it could not run on time: acceptable only when the
    kernel shows the machine was saturated (over 20 % waiting), and then at
    most for 10 % of the runs, and the test says so.
    """
    busy = sched.telemetry.skipped.labels("busy")._value.get()
    late = sched.telemetry.skipped.labels("late")._value.get()
    assert busy == 0 and sum(s.skipped_by_cause.get("busy", 0) for s in states) == 0
    assert late == sum(s.skipped_by_cause.get("late", 0) for s in states)
    if starved <= 0.2:
        assert late == 0, f"late skips while waiting for a CPU only {starved:.0%} of the time"
    elif late:
        assert late <= 0.1 * sum(s.runs_total for s in states), (late, starved)
        warnings.warn(f"{late:g} runs skipped as late: the scheduler waited for a CPU "
                      f"{starved:.0%} of the time (the machine is saturated)", stacklevel=2)


def test_hanging_http_targets_never_fail_healthy_http_json_or_tcp(web: LoopbackServer) -> None:
    with silent_listener() as silent, scheduling(hanging_http(silent) + healthy_web(web)) as sched:
        waited = cpu_wait(sched)
        time.sleep(SECONDS)
        assert_isolated(sched, ("web-", "status-", "tcp-"), (cpu_wait(sched) - waited) / SECONDS)


def test_hanging_http_targets_never_fail_sip_options(web: LoopbackServer, tmp_path: Path) -> None:
    with sipp(tmp_path, "options-200.xml") as peer, silent_listener() as silent:
        sip = [probe(f"sip-{i}", "sip", peer.uri) for i in range(10)]
        with scheduling(hanging_http(silent) + healthy_web(web) + sip) as sched:
            waited = cpu_wait(sched)
            time.sleep(SECONDS)
            assert_isolated(sched, ("web-", "status-", "tcp-", "sip-"),
                            (cpu_wait(sched) - waited) / SECONDS)


def test_hanging_commands_never_delay_healthy_probes_and_leave_nothing_behind(
        web: LoopbackServer, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # Ignores SIGTERM, and its child (ignoring it too) holds the output pipe.
    script = (f"trap '' TERM; (trap '' TERM; sleep 60) & echo $! >> {pids}; "
              f"echo $$ >> {pids}; while :; do sleep 0.1; done")
    stubborn = [probe(f"hang-cmd-{i}", "command", "localhost",
                      command={"argv": [script], "shell": True}) for i in range(5)]
    seconds = 10.0
    with scheduling(stubborn + healthy_web(web)) as sched:
        waited = cpu_wait(sched)
        time.sleep(seconds)
        states = sched.states()
        healthy = [s for s in states if not s.spec.name.startswith("hang-")]
        assert [s.spec.name for s in healthy if s.failures_total] == []
        assert min(s.runs_total + s.skipped_total for s in healthy) >= runs_expected(seconds)
        hanging = [s for s in states if s.spec.name.startswith("hang-")]
        assert all(s.runs_total + s.skipped_total >= runs_expected(seconds)
                   and s.last is not None and s.last.reason == "timeout" for s in hanging)
        assert_no_skips(sched, states, (cpu_wait(sched) - waited) / seconds)
    time.sleep(1.5)  # the last run's SIGKILL comes half a second after its SIGTERM
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) >= 2 * 5 * runs_expected(seconds)
    left = [pid for pid in started if pid_running(pid)]
    assert left == [], f"{len(left)} processes of timed-out commands still run"


def test_an_overloaded_loop_skips_runs_as_late_and_reports_no_healthy_target_down(
        web: LoopbackServer) -> None:
    port = web.server_address[1]
    probes = ([probe(f"web-{i}", "http", f"{web.base}/ok") for i in range(20)]
              + [probe(f"tcp-{i}", "tcp", f"127.0.0.1:{port}") for i in range(20)])
    assert late_bound(2.0) == 0.5
    with scheduling(probes) as sched:
        loop = sched._loop
        assert loop is not None

        def hog() -> None:  # the loop stands still for 1.8 s, every 3 s
            time.sleep(1.8)
            loop.call_later(1.2, hog)

        loop.call_soon_threadsafe(loop.call_later, 1.0, hog)
        time.sleep(15.0)
        states = sched.states()
        failed = {s.spec.name: (s.failures_total, s.last.message if s.last else "")
                  for s in states if s.failures_total}
        assert failed == {}
        late = sum(s.skipped_by_cause.get("late", 0) for s in states)
        assert late >= len(probes)  # each 1.8 s stall covers most of a 2 s period
        assert sched.telemetry.skipped.labels("late")._value.get() == late
        assert all(s.runs_total >= 2 for s in states)
        text = b"".join(b"".join(s.lines.fixed) for s in states).decode()
        # A run in flight across a stall is still going at its next slot: busy.
        assert 'cause="late"' in text
