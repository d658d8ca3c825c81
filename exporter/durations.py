"""Durations for the exporter's modules: the one implementation lives in probes.durations."""

from probes.durations import MAX_DURATION, Duration, format_duration, parse_duration

__all__ = ["MAX_DURATION", "Duration", "format_duration", "parse_duration"]
