"""Nonces already answered, kept while a replay of them could still look fresh."""

from __future__ import annotations

import heapq


class ReplayCache:
    """A bounded set of nonces, each kept until its request would be stale anyway.

    A nonce is remembered until ``timestamp + max_skew``; after that the agent
    refuses the datagram for its age, so forgetting it opens no replay.  When
    ``capacity`` fresh nonces are held, ``remember`` refuses new ones rather
    than forget a live one.
    """

    def __init__(self, max_skew: float, capacity: int = 65536) -> None:
        self.max_skew = max_skew
        self.capacity = capacity
        self._expiry: list[tuple[float, str]] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)

    def seen(self, nonce: str) -> bool:
        return nonce in self._seen

    def remember(self, nonce: str, timestamp: float, now: float) -> bool:
        """Record ``nonce``; False if the cache is full of live nonces."""
        self._forget_expired(now)
        if len(self._seen) >= self.capacity:
            return False
        self._seen.add(nonce)
        # A second of margin covers the millisecond rounding of timestamps.
        heapq.heappush(self._expiry, (timestamp + self.max_skew + 1.0, nonce))
        return True
