"""Durations in Prometheus form (500ms, 10s, 5m, 1h30m) or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: object) -> float:
    """Return seconds, or raise ValueError with a message fit for a user."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 500ms, 10s, 5m, 1h30m or seconds)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{value!r} is not a duration (use 500ms, 10s, 5m, 1h30m or seconds)"
                ) from None
    else:
        raise ValueError(f"{value!r} is not a duration (use 500ms, 10s, 5m, 1h30m or seconds)")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-style spelling of ``seconds`` (10s, 1m30s, 500ms)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out
