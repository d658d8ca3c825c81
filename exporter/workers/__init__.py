"""``serve --workers N``: N worker processes each run a shard of the probes.

One event loop holds one core, so past what one loop can run (tens of
thousands of tcp probes) probewatch uses several processes behind one
/metrics endpoint:

- the parent (``PoolExporter``, ``exporter/workers/parent.py``) loads and
  validates the config, serves HTTP (web config, auth, gzip as with one
  process), keeps the registered-probe store, and sends each worker the specs
  of its share (``share_of``: the same stable sha256 of the probe name as
  ``--shard``);
- each worker (``python -m exporter.workers.child``, ``child.py``) runs the
  ordinary Scheduler on its share and answers the parent's requests over a
  private socketpair (no TCP listener): apply these specs, your probe
  families, your telemetry, your probe states;
- ``pool.py`` starts the workers, restarts one that dies
  (probewatch_worker_restarts_total) with its last specs, and stops them all.

A worker that loses its parent (the socketpair's end of file) stops at once,
so no worker outlives the parent, even after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os


def parse_workers(text: str) -> int:
    """``N`` (1 or more) or ``auto`` (the CPUs this process may use); ValueError otherwise."""
    value = text.strip().lower()
    if value == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1 or 'auto'")
    return int(value)


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim).

    Loading a large config frees most of what it allocated (the YAML tree, the
    pickles sent to the workers) but glibc keeps those pages; trimmed, the
    resident size is what the process really holds.  No-op elsewhere.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
