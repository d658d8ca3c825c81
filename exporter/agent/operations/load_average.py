"""System load average over 1, 5 and 15 minutes (fields load1, load5, load15)."""

from __future__ import annotations

import os

ARGUMENTS = ""


def collect(args: list[str]) -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen}
