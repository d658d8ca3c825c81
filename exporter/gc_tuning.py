"""The cyclic garbage collector, tuned for a process holding tens of thousands of probes.

The scheduler raises the youngest generation's threshold when it is made,
collects before each config apply and freezes the probe set after it.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterator

# Python's cyclic collector: generation 0 is collected after this many new
# container objects (CPython's default is 700).  See raise_gc_threshold().
GC_GEN0 = 50_000
FULL_COLLECT_EVERY = 600.0  # seconds between full collections done at a config apply


def raise_gc_threshold() -> None:
    """Collect the youngest generation every GC_GEN0 allocations, not every 700.

    Done when the scheduler is made, before the config is loaded: loading and
    then running tens of thousands of probes allocates long-lived objects
    faster than CPython's default thresholds are made for, and its frequent
    collections (most of them promoting survivors towards full collections
    that walk the whole heap) ate half the CPU at 50,000 probes.
    """
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gc.get_threshold()[0], GC_GEN0), max(gen1, 20), max(gen2, 100))


_last_full_collect = -math.inf


def collect_before_apply() -> None:
    """Before a config apply: thaw what the last apply froze and collect.

    A full collection (which walks the whole heap: about a second at 60,000
    probes on a slow machine) at most every FULL_COLLECT_EVERY seconds, the
    young generations otherwise, so frozen cyclic garbage is reclaimed without
    stalling the loop on every API write.
    """
    global _last_full_collect
    gc.unfreeze()
    now = time.monotonic()
    if now - _last_full_collect >= FULL_COLLECT_EVERY:
        _last_full_collect = now
        gc.collect()
    else:
        gc.collect(1)


def freeze_gc() -> None:
    """After a config apply: move the probe set out of the cyclic collector's sight.

    The specs, kind instances and states live until the next reload; frozen,
    a full collection no longer walks them.  No collection here (it came
    before the apply).  Reference counting still frees almost everything at
    once; the collector only finds cycles.
    """
    gc.freeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block: for work that makes many objects and no garbage.

    A config apply makes a state, a kind instance and an entry per new probe;
    the collector would walk them again and again as they pile up (15% of
    applying 50,000 probes), only for freeze_gc to put them out of its sight.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
