"""Durations in Prometheus form (500ms, 10s, 5m, 1h30m) or plain seconds.

Only ASCII digits are read (Python's ``float`` takes fullwidth and other
Unicode digits; a duration here does not), and the result is always a finite number of seconds greater than zero
and at most ``MAX_DURATION``: NaN, infinity and overflowing spellings such as
``1e999`` are refused with a message, never passed on.

This lives in probes/ because kinds name durations in their messages and options;
exporter.durations re-exports it for the exporter's own modules.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w|y)", re.ASCII)
_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Ten years: longer than any period or timeout means anything; beyond it a typo.
MAX_DURATION = 10 * 31536000.0
_HINT = "use 500ms, 10s, 5m, 1h30m or seconds"

# A float number of seconds, written in config as 500ms, 10s, 5m or seconds: the type a kind's
# options dataclass gives a time span (exporter.options reads and checks it).
Duration = Annotated[float, "duration"]


def parse_duration(value: object) -> float:
    """Return seconds, or raise ValueError with a message fit for a user."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({_HINT})")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip()
        if _SECONDS.fullmatch(text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(f"{value!r} is not a duration ({_HINT})") from None
    else:
        raise ValueError(f"{value!r} is not a duration ({_HINT})")
    if math.isnan(seconds):
        raise ValueError(f"{_shown(value)} is not a number of seconds")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{_shown(value)} is longer than 10 years, the longest duration taken")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "..."


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-style spelling of ``seconds`` (10s, 1m30s, 500ms)."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 0.001:
        return f"{seconds:g}s"
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
