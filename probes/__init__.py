"""Probe kinds: one module per kind, each running a probe once and returning a Result.

A probe never touches the metrics registry, never sleeps between runs and never
schedules itself: exporter.scheduler owns time, exporter.exposition owns output.
"""

# probewatch's version, one place: the http kind's User-Agent reads it here, and
# exporter.__version__ (--version, /status, probewatch_build) re-exports it.
__version__ = "0.1.0"
