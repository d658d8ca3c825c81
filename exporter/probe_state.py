"""Live state of each probe: last result, counters, histogram, recent runs.

The scheduler writes a ProbeState after every run (in the event loop thread);
HTTP handlers only read it.  After each run the state re-renders its exposition
lines once, so a scrape of 10,000 probes joins cached strings instead of
formatting a quarter of a million samples.

"In trouble" (``troubled``) is what decides the series only failing probes
export (docs/metrics.md): a probe enters it at a failure and leaves it once it
has succeeded ``SETTLE_RUNS`` times in a row and ``SETTLE_SECONDS`` have passed
since the run that made that count, so every scrape and the rules' 5m grace see
the recovery before the series go.
"""

from __future__ import annotations

import bisect
import time

from probes.base import Result, truncate

from .config import ProbeSpec
from .exposition import (
    DURATION_BUCKETS,
    LabelSet,
    ProbeLines,
    render_probe,
    with_run,
    with_skipped,
)
from .history import RunHistory
from .peer_data import clean_result

RECENT_RUNS = 100
SETTLE_RUNS = 2  # rules.yml's `< 2`: successes in a row that resolve ProbeFailing
SETTLE_SECONDS = 900.0


class ProbeState:
    # Slots: 100,000 of these live in one process, and each dict would be ~300 bytes.
    __slots__ = ("_clean_message", "_raw_message", "bucket_counts", "consecutive_failures",
                 "consecutive_successes", "created_at", "duration_sum", "failure_message", "failure_reason",
                 "failures_total", "labels", "last", "last_change_at", "last_latency", "last_run_at", "lines",
                 "next_run_at", "recent", "runs_total", "settling_since", "skipped_by_cause", "spec", "troubled")

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.labels = LabelSet.for_spec(spec)
        self.runs_total = 0
        self.failures_total = 0
        self.skipped_by_cause: dict[str, int] = {}  # busy / late -> runs not started
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        # Counted only with `histogram: true` (a changed spec makes a new state).
        self.bucket_counts = [0] * (len(DURATION_BUCKETS) + 1) if spec.histogram else []
        self.duration_sum = 0.0
        self.last: Result | None = None
        self.last_latency = 0.0
        self.last_run_at = 0.0  # Unix time the last run ended
        self.last_change_at = 0.0  # Unix time of the last up/down change
        self.next_run_at = 0.0  # Unix time of the next scheduled start
        self.created_at = time.time()
        self.troubled = False
        self.settling_since = 0.0  # when consecutive_successes reached SETTLE_RUNS
        # The failure_info labels: the streak's first failure, until the reason changes.
        self.failure_reason = ""
        self.failure_message = ""
        self.recent = RunHistory(RECENT_RUNS)
        # The last message as the kind gave it and as cleaned: a probe repeating
        # itself (most do, run after run) is cleaned once, not every run.
        self._raw_message = ""
        self._clean_message = ""
        self.lines: ProbeLines = render_probe(self)

    @property
    def up(self) -> bool | None:
        return None if self.last is None else self.last.up

    def record(self, result: Result, latency: float, started: float) -> bool:
        """Store a finished run; return True when up/down changed."""
        message = result.message
        if message == self._raw_message and not result.readings and result.level_name is None:
            result.message = self._clean_message  # the same text as last run: cleaned once
        else:
            clean_result(result)  # peers' text and readings bounded (exporter.peer_data)
            result.message = truncate(result.message)
            self._raw_message, self._clean_message = message, result.message
        previous = self.last
        changed = previous is not None and previous.up != result.up
        ended = started + latency
        if previous is None or changed:
            self.last_change_at = ended
        self.runs_total += 1
        was_troubled = self.troubled
        if result.up:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.consecutive_successes == SETTLE_RUNS:
                self.settling_since = ended
            elif (self.troubled and self.consecutive_successes > SETTLE_RUNS
                  and ended - self.settling_since >= SETTLE_SECONDS):
                self.troubled = False
        else:
            if self.consecutive_failures == 0 or result.reason != self.failure_reason:
                self.failure_reason, self.failure_message = result.reason, result.message
            self.failures_total += 1
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.troubled = True
        if self.spec.histogram:
            self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, latency)] += 1
            self.duration_sum += latency
        self.last = result
        self.last_latency = latency
        self.last_run_at = ended
        self.recent.add(started, latency, result.up, result.code, result.reason, result.message,
                        result.level_name)
        if (previous is not None and result.up and previous.up and not was_troubled
                and not self.troubled and previous.code == result.code
                and not result.readings and not previous.readings and not self.spec.histogram):
            # A healthy run like the last one: only runs_total and the latency changed.
            self.lines = with_run(self.lines, self)
        else:
            self.lines = render_probe(self)
        return changed or (self.runs_total == 1 and not result.up)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped_by_cause.values())

    def skipped(self, cause: str = "busy") -> None:
        """A run not started: ``busy`` (the previous one still going) or ``late``.

        Only the skipped line is rendered again: when the loop is behind,
        skipping must cost far less than running, or it never catches up.
        """
        self.skipped_by_cause[cause] = self.skipped_by_cause.get(cause, 0) + 1
        self.lines = with_skipped(self.lines, self)

