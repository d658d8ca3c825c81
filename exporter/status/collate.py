"""Megaphone's collated status: each probe's level, a selection, and the worst of them.

Levels, least to most critical: OK, Unknown, Warning, Critical.  A probe's level
is the json kind's level when its last result carries one (its name when that
is one of the four, else its number on the same 0-3 scale), else OK when up,
else Warning when its ``severity`` label says so, else Critical; a probe that
has not run yet is Unknown.  The HTTP answer for load balancers is separate
from the level: 200 only when at least one active probe is selected and every
selected active probe's last run was up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ProbeSpec
from ..probe_state import ProbeState

LEVELS = ("OK", "Unknown", "Warning", "Critical")
_BY_LOWER = {name.lower(): name for name in LEVELS}
# severity label values under which a down probe is a Warning rather than Critical.
WARNING_SEVERITIES = frozenset({"warning", "warn", "minor", "low", "info"})
QUERY_KEYS = ("group", "label", "probe")


def level_of(state: ProbeState) -> str:
    last = state.last
    if last is None:
        return "Unknown"
    if last.level_name and last.level_name.lower() in _BY_LOWER:
        return _BY_LOWER[last.level_name.lower()]
    if last.level is not None:  # a level table with names of its own: read the number
        return LEVELS[min(max(last.level, 0), len(LEVELS) - 1)]
    if last.up:
        return "OK"
    return down_level(state.spec)


def down_level(spec: ProbeSpec) -> str:
    severity = dict(spec.labels).get("severity", "").strip().lower()
    return "Warning" if severity in WARNING_SEVERITIES else "Critical"


def worst(levels: Iterable[str]) -> str:
    return max(levels, key=LEVELS.index, default="Unknown")


def group_of(spec: ProbeSpec) -> str:
    return dict(spec.labels).get("group", "")


@dataclass(frozen=True)
class Selection:
    """?group=G (any of), ?label=key:value (all of), ?probe=NAME (any of)."""

    groups: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    probes: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> Selection:
        """Parse the query; ValueError names an unknown parameter or a bad label."""
        unknown = sorted(set(query) - set(QUERY_KEYS))
        if unknown:
            raise ValueError(f"unknown query parameter {unknown[0]!r} "
                             f"(known: {', '.join(QUERY_KEYS)})")
        labels = []
        for item in query.get("label", ()):
            key, sep, value = item.partition(":")
            if not sep or not key:
                raise ValueError(f"label={item!r} must be key:value, "
                                 "for example label=severity:critical")
            labels.append((key, value))
        return cls(tuple(query.get("group", ())), tuple(labels), tuple(query.get("probe", ())))

    def matches(self, spec: ProbeSpec) -> bool:
        labels = dict(spec.labels)
        return ((not self.groups or labels.get("group") in self.groups)
                and all(labels.get(k) == v for k, v in self.labels)
                and (not self.probes or spec.name in self.probes))

    def select(self, states: Iterable[ProbeState]) -> list[ProbeState]:
        return sorted((s for s in states if self.matches(s.spec)), key=lambda s: s.spec.name)


@dataclass(frozen=True)
class Collated:
    status: str  # the worst level of the selected active probes
    healthy: bool  # every selected active probe is up (and there is one)
    message: str
    probes: list[ProbeState]  # the selected active probes, by name


def collate(states: Iterable[ProbeState], selection: Selection) -> Collated:
    chosen = [s for s in selection.select(states) if s.spec.active]
    if not chosen:
        return Collated("Unknown", False, "no active probe matches the selection", [])
    levels = {s.spec.name: level_of(s) for s in chosen}
    not_ok = [f"{s.spec.name}:{levels[s.spec.name]}:{describe(s)}"
              for s in chosen if levels[s.spec.name] != "OK"]
    healthy = all(s.up for s in chosen)
    everyone = "1 probe, OK" if len(chosen) == 1 else f"all {len(chosen)} probes OK"
    message = "; ".join(not_ok) if not_ok else everyone
    return Collated(worst(levels.values()), healthy, message, chosen)


def describe(state: ProbeState) -> str:
    if state.last is None:
        return "not run yet"
    return state.last.message or state.last.reason or ("up" if state.last.up else "down")


def iso(ts: float, precise: bool = False) -> str | None:
    """Unix time as ISO 8601 in local time with its offset; None for 'never'."""
    if not ts:
        return None
    moment = dt.datetime.fromtimestamp(ts, dt.UTC).astimezone()
    return moment.isoformat(timespec="milliseconds" if precise else "seconds")


def summary(state: ProbeState) -> dict[str, Any]:
    """One probe as /status and the probe list show it."""
    spec, last = state.spec, state.last
    return {
        "name": spec.name,
        "status": level_of(state) if spec.active else "Unknown",
        "up": state.up,
        "active": spec.active,
        "source": spec.source,
        "kind": spec.kind,
        "target": spec.shown_target,
        "group": group_of(spec),
        "labels": dict(spec.labels),
        "code": last.code if last else None,
        "reason": last.reason if last else "",
        "message": last.message if last else "",
        "latency_seconds": round(state.last_latency, 6) if last else None,
        "last_run": iso(state.last_run_at),
        "last_change": iso(state.last_change_at),
    }
