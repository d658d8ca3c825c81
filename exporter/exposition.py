"""Rendering probe state as Prometheus text (0.0.4) or OpenMetrics 1.0.

What a probe exports (docs/metrics.md): a healthy probe its five series (up,
latency, return code, runs, failures) plus its kind's readings; a probe in
trouble (ProbeState.troubled) adds threshold, both streak counts and
failure_info; ``histogram: true`` adds the duration histogram.

Each probe's sample lines are rendered once per run (``render_probe``) and
cached on its state; a scrape only groups the cached lines by family and adds
headers.  The exporter's own series come from prometheus_client's registry and
are appended by ``merge_own`` when exporter.service answers /metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ProbeSpec
    from .probe_state import ProbeState

# Nine buckets from 5ms to 30s, rendered only for probes with `histogram: true`; each
# ProbeState counts its runs into them (exporter.probe_state imports this from here).
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0)

# (name, type, help).  Counters are named without _total here; samples add it.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("probewatch_probe_up", "gauge", "1 if the last run of the probe succeeded, else 0."),
    ("probewatch_probe_latency_seconds", "gauge", "Duration of the last run."),
    ("probewatch_probe_return_code", "gauge",
     "The kind's own code of the last run (exit code, HTTP or SIP status); -1 when none."),
    ("probewatch_probe_runs", "counter", "Runs finished."),
    ("probewatch_probe_failures", "counter", "Runs that failed."),
    ("probewatch_probe_skipped", "counter",
     "Runs not started: cause busy (the previous run was still going) or late (the exporter "
     "could not start it near its slot). A cause is shown once its count is above 0."),
    ("probewatch_probe_duration_seconds", "histogram", "Durations of runs (histogram: true)."),
    ("probewatch_probe_consecutive_failures", "gauge", "Failed runs in a row (while in trouble)."),
    ("probewatch_probe_consecutive_successes", "gauge",
     "Successful runs in a row (while in trouble)."),
    ("probewatch_probe_failure_threshold", "gauge",
     "The probe's failures setting: failures within the alert window that fire an alert "
     "(while in trouble)."),
    ("probewatch_probe_failure", "info",
     "Present while the probe is failing: the reason, and the message of the streak's first "
     "failure with that reason."),
)
INDEX = {name: i for i, (name, _, _) in enumerate(FAMILIES)}
_BLOCK = 250  # probes per joined piece of a family


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def fmt(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


@dataclass(frozen=True)
class LabelSet:
    """A probe's labels, escaped once: ``probe="web",kind="tcp",target="...",group="x"``."""

    text: str

    @classmethod
    def for_spec(cls, spec: ProbeSpec) -> LabelSet:
        pairs = [("probe", spec.name), ("kind", spec.kind), ("target", spec.shown_target), *spec.labels]
        return cls(",".join(f'{k}="{escape(v)}"' for k, v in pairs))


@dataclass(frozen=True)
class ProbeLines:
    """One probe's sample lines, encoded once per run so a scrape only joins bytes."""

    fixed: tuple[bytes, ...]  # one entry per FAMILIES entry (b"" when absent)
    extra: dict[str, tuple[str, bytes]]  # metric name -> (help, lines)


# The ``extra`` of every probe without readings: one shared dict, never written to.
NO_EXTRA: dict[str, tuple[str, bytes]] = {}


def _histogram(state: ProbeState, lab: str) -> str:
    cumulative, buckets = 0, []
    for bound, count in zip((*DURATION_BUCKETS, math.inf), state.bucket_counts, strict=True):
        cumulative += count
        le = "+Inf" if math.isinf(bound) else repr(bound)
        buckets.append(f'probewatch_probe_duration_seconds_bucket{{{lab},le="{le}"}} {cumulative}\n')
    buckets.append(f"probewatch_probe_duration_seconds_count{{{lab}}} {cumulative}\n")
    buckets.append(f"probewatch_probe_duration_seconds_sum{{{lab}}} {fmt(state.duration_sum)}\n")
    return "".join(buckets)


def render_probe(state: ProbeState) -> ProbeLines:
    spec = state.spec
    lab = state.labels.text
    out = [""] * len(FAMILIES)
    extra: dict[str, tuple[str, str]] = {}

    def put(family: str, value: float, sample: str = "") -> None:
        out[INDEX[family]] = f"{sample or family}{{{lab}}} {fmt(value)}\n"

    if spec.active:
        # Present from start, so increase() and the rules see the first failure.
        put("probewatch_probe_runs", state.runs_total, "probewatch_probe_runs_total")
        put("probewatch_probe_failures", state.failures_total, "probewatch_probe_failures_total")
        out[INDEX["probewatch_probe_skipped"]] = _skipped_lines(state)
        if spec.histogram:
            out[INDEX["probewatch_probe_duration_seconds"]] = _histogram(state, lab)
    last = state.last
    if spec.active and last is not None:
        put("probewatch_probe_up", int(last.up))
        put("probewatch_probe_latency_seconds", state.last_latency)
        put("probewatch_probe_return_code", last.code)
        if state.troubled:
            put("probewatch_probe_consecutive_failures", state.consecutive_failures)
            put("probewatch_probe_consecutive_successes", state.consecutive_successes)
            put("probewatch_probe_failure_threshold", spec.failures)
        if not last.up:
            out[INDEX["probewatch_probe_failure"]] = (
                f'probewatch_probe_failure_info{{{lab},reason="{escape(state.failure_reason)}",'
                f'message="{escape(state.failure_message)}"}} 1\n'
            )
        for reading in last.readings:
            more = "".join(f',{k}="{escape(v)}"' for k, v in reading.labels)
            line = f"{reading.metric}{{{lab}{more}}} {fmt(reading.value)}\n"
            help_text, lines = extra.get(reading.metric, (reading.help, ""))
            extra[reading.metric] = (help_text, lines + line)
    return ProbeLines(tuple(chunk.encode() for chunk in out),
                      {k: (h, text.encode()) for k, (h, text) in extra.items()} if extra else NO_EXTRA)


_RUNS = INDEX["probewatch_probe_runs"]
_LATENCY = INDEX["probewatch_probe_latency_seconds"]


def with_run(lines: ProbeLines, state: ProbeState) -> ProbeLines:
    """``lines`` after a healthy run like the last one: only runs_total and the latency again.

    The caller (ProbeState.record) has checked that nothing else changed: up,
    return code, failures, trouble, readings and histogram are as last rendered.
    """
    lab = state.labels.text
    fixed = list(lines.fixed)
    fixed[_RUNS] = f"probewatch_probe_runs_total{{{lab}}} {state.runs_total}\n".encode()
    fixed[_LATENCY] = f"probewatch_probe_latency_seconds{{{lab}}} {fmt(state.last_latency)}\n".encode()
    return ProbeLines(tuple(fixed), lines.extra)


def _skipped_lines(state: ProbeState) -> str:
    """probewatch_probe_skipped_total, one line per cause whose count is above 0."""
    lab = state.labels.text
    return "".join(f'probewatch_probe_skipped_total{{{lab},cause="{cause}"}} {count}\n'
                   for cause, count in sorted(state.skipped_by_cause.items()) if count)


def with_skipped(lines: ProbeLines, state: ProbeState) -> ProbeLines:
    """``lines`` with only the skipped counter rendered again (cheap: a skip is no run)."""
    if not state.spec.active:
        return lines
    fixed = list(lines.fixed)
    fixed[INDEX["probewatch_probe_skipped"]] = _skipped_lines(state).encode()
    return ProbeLines(tuple(fixed), lines.extra)


def _header(name: str, typ: str, help_text: str, openmetrics: bool) -> str:
    if openmetrics:
        return f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n"
    if typ == "counter":
        name += "_total"
    elif typ == "info":
        name, typ = name + "_info", "gauge"
    return f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n"


@dataclass(frozen=True)
class Family:
    """One family's samples, headers not yet added: what a shard of probes contributes.

    Families from several shards (worker processes) with the same ``name`` are
    joined by ``assemble`` under one HELP/TYPE header.
    """

    name: str
    type: str
    help: str
    samples: tuple[bytes, ...]


def probe_families(states: Iterable[ProbeState]) -> list[Family]:
    """The probe families of ``states`` in exposition order (fixed ones, then extras by name).

    Sample lines are the same in both formats, so this does not depend on the format.
    """
    lines = [s.lines for s in states]
    # Joined in blocks: a single join of 10,000 probes holds the GIL for tens of
    # milliseconds, and the scheduler's event loop would wait for it.  zip()
    # turns a block's per-probe tuples into per-family columns in C.
    columns: list[list[bytes]] = [[] for _ in FAMILIES]
    for start in range(0, len(lines), _BLOCK):
        for i, column in enumerate(zip(*[pl.fixed for pl in lines[start:start + _BLOCK]], strict=True)):
            if block := b"".join(column):
                columns[i].append(block)
    families = [Family(name, typ, help_text, tuple(columns[i]))
                for i, (name, typ, help_text) in enumerate(FAMILIES) if columns[i]]
    extras: dict[str, tuple[str, list[bytes]]] = {}
    for pl in lines:
        for metric, (help_text, text) in pl.extra.items():
            extras.setdefault(metric, (help_text, []))[1].append(text)
    for metric in sorted(extras):
        help_text, texts = extras[metric]
        families.append(Family(metric, "gauge", help_text, (b"".join(texts),)))
    return families


def assemble(shards: Iterable[list[Family]], openmetrics: bool = False) -> list[bytes]:
    """Families of one or more shards as exposition parts: each name once, with its header.

    Fixed families keep their FAMILIES order, extras follow sorted by name; the
    first shard that has a family gives its HELP.  No trailing # EOF.
    """
    merged: dict[str, tuple[Family, list[bytes]]] = {}
    for families in shards:
        for fam in families:
            if fam.name in merged:
                merged[fam.name][1].extend(fam.samples)
            else:
                merged[fam.name] = (fam, list(fam.samples))
    order = sorted(merged, key=lambda n: (INDEX.get(n, len(FAMILIES)), n))
    parts: list[bytes] = []
    for name in order:
        fam, samples = merged[name]
        parts.append(_header(fam.name, fam.type, fam.help, openmetrics).encode())
        parts.extend(samples)
    return parts


def render_probes(states: Iterable[ProbeState], openmetrics: bool = False) -> list[bytes]:
    """All probe families of one process, grouped, with headers; no trailing # EOF.

    Each family is encoded as soon as it is joined, so a scrape of 10,000
    probes holds one family as text at a time, not the whole page three times.
    """
    return assemble([probe_families(states)], openmetrics)


def merge_own(probe_parts: list[bytes], own: bytes, openmetrics: bool) -> list[bytes]:
    """Append the exporter's own families (prometheus_client output) to the probe families."""
    if openmetrics and own.endswith(b"# EOF\n"):
        own = own[: -len(b"# EOF\n")]
    return [*probe_parts, own, b"# EOF\n"] if openmetrics else [*probe_parts, own]


def samples_of(state: ProbeState) -> list[str]:
    """The sample lines one probe exports (for `probewatch probe`)."""
    out = [line for chunk in state.lines.fixed for line in chunk.decode().splitlines()]
    for _, text in state.lines.extra.values():
        out.extend(text.decode().splitlines())
    return out
