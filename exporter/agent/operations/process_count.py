"""Number of processes running on the machine, counted in /proc (field process_count)."""

from __future__ import annotations

import os

ARGUMENTS = ""


def collect(args: list[str]) -> dict[str, float]:
    return {"process_count": float(sum(1 for name in os.listdir("/proc") if name.isdigit()))}
