"""Splitting probes across replicas by a stable hash of the probe name."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, probe_name: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(probe_name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``i/N`` with 0 <= i < N; raise ValueError with what is wrong."""
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not i/N (for example 0/3)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"{text!r}: need N >= 1 and 0 <= i < N")
    return Shard(index, count)


def ordinal_from_hostname(hostname: str) -> int:
    """The trailing ordinal of a StatefulSet pod name (probewatch-2 -> 2)."""
    m = re.search(r"-(\d+)$", hostname)
    if not m:
        raise ValueError(f"hostname {hostname!r} does not end in -<ordinal> (is this a StatefulSet pod?)")
    return int(m.group(1))
