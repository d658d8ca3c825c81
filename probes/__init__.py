"""Probe kinds: one module per kind, each running a probe once and returning a Result.

A probe never touches the metrics registry, never sleeps between runs and never
schedules itself: exporter.scheduler owns time, exporter.exposition owns output.
"""
