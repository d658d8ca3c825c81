"""The fields every probe shares (name, kind, target, period, timeout, active, labels,
failures, histogram): their rules, their defaults and their checks.

Both ways of reading a probe use these: the general one (``config.parse_probe``)
and the fast one for plain probes (``simple_probe``), so they cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import limits
from .durations import format_duration
from .options import Duration

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Label names probewatch itself puts on series; a probe's labels may not shadow them.
RESERVED_LABELS = frozenset(
    {"probe", "kind", "target", "reason", "message", "field", "stat", "le", "shard", "state"}
)
DEFAULT_TIMEOUT = 10.0
SHARED_KEYS = ("name", "kind", "target", "period", "timeout", "active", "labels", "failures",
               "histogram")
# "${listen}" in a target: where this exporter serves (`serve` sets it once bound; else the default).
LISTEN = {"address": "127.0.0.1:9637"}


@dataclass
class Defaults:
    """Values every probe takes unless it sets its own."""

    period: Duration = 30.0
    # None: 10s, or 80% of the period when the period is 10s or less.
    timeout: Duration | None = None
    failures: int = 3
    labels: dict[str, str] = field(default_factory=dict)
    histogram: bool = False  # export probewatch_probe_duration_seconds (12 series a probe)

    def sorted_labels(self) -> tuple[tuple[str, str], ...]:
        """The labels as a probe without its own labels carries them."""
        return tuple(sorted(self.labels.items()))

    def check(self) -> list[tuple[str, str]]:
        out = range_problems(self.period, self.timeout, self.failures)
        out.extend(label_problems(self.labels))
        return out


@dataclass
class Shared:
    """The shared fields as written; None means "take it from defaults"."""

    target: str = ""
    period: Duration | None = None
    timeout: Duration | None = None
    active: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    failures: int | None = None
    histogram: bool | None = None


def label_problems(labels: dict[str, str], prefix: str = "labels.") -> list[tuple[str, str]]:
    out = []
    if len(labels) > limits.MAX_LABELS:
        out.append((prefix.rstrip("."), f"sets {len(labels)} labels; at most {limits.MAX_LABELS} are taken"))
    for key, value in labels.items():
        if not LABEL_RE.match(key):
            out.append((prefix + key, "is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"))
        elif key in RESERVED_LABELS or key.startswith("__"):
            out.append((prefix + key, "is reserved by probewatch; choose another label name"))
        elif len(value) > limits.MAX_LABEL_VALUE:
            out.append((prefix + key, f"is {len(value)} characters long; at most "
                                      f"{limits.MAX_LABEL_VALUE} are taken"))
    return out


def range_problems(period: float | None, timeout: float | None,
                    failures: int | None) -> list[tuple[str, str]]:
    """The documented ranges of the shared numbers (README: Hardening and limits)."""
    out = []
    if period is not None and not limits.MIN_PERIOD <= period <= limits.MAX_PERIOD:
        out.append(("period", f"{format_duration(period)} is outside "
                              f"{format_duration(limits.MIN_PERIOD)}..7d"))
    elif timeout is not None and timeout < limits.MIN_TIMEOUT:
        out.append(("timeout", f"{format_duration(timeout)} is shorter than "
                               f"{format_duration(limits.MIN_TIMEOUT)}"))
    if failures is not None and not 1 <= failures <= limits.MAX_FAILURES:
        out.append(("failures", f"must be from 1 to {limits.MAX_FAILURES}"))
    return out
