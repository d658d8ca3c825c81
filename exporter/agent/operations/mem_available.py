"""Memory available for new work without swapping (field mem_available_bytes).

Read from MemAvailable in /proc/meminfo.
"""

from __future__ import annotations

ARGUMENTS = ""
MEMINFO = "/proc/meminfo"


def collect(args: list[str]) -> dict[str, float]:
    with open(MEMINFO, encoding="ascii") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name == "MemAvailable":
                amount, _, unit = rest.strip().partition(" ")
                factor = 1024 if unit.strip() == "kB" else 1
                return {"mem_available_bytes": float(int(amount) * factor)}
    raise ValueError(f"{MEMINFO} has no MemAvailable line")
