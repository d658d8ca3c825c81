"""Seconds since the machine booted, from /proc/uptime (field uptime_seconds)."""

from __future__ import annotations

ARGUMENTS = ""
UPTIME = "/proc/uptime"


def collect(args: list[str]) -> dict[str, float]:
    with open(UPTIME, encoding="ascii") as fh:
        return {"uptime_seconds": float(fh.read().split()[0])}
