"""The catalogue of the extra series kinds export beside the common ones (name, help, labels).

Every ``Reading`` a kind returns comes from one ``Series`` here (``series.reading(value,
*label_values)``), so a series has one HELP line and one label set however many
kinds export it (``probewatch_probe_value`` serves json and udp).  docs/metrics.md
lists the same catalogue; tests/probes/test_readings.py checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Reading

# How many probewatch_probe_value series one probe exports per run (the rest are counted).
MAX_VALUE_FIELDS = 32


@dataclass(frozen=True)
class Series:
    """One extra series: its full name, HELP text, own label names and the kinds that export it."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def reading(self, value: float, *label_values: str) -> Reading:
        """A reading of this series; ``label_values`` in the order of ``labels``."""
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, not {label_values}")
        return Reading(self.name, float(value), self.help, tuple(zip(self.labels, label_values, strict=True)))


HTTP_CERT_EXPIRY = Series("probewatch_probe_http_cert_expiry_timestamp_seconds",
                          "Unix time the server's leaf certificate expires", (), ("http", "json"))
HTTP_CONTENT_LENGTH = Series("probewatch_probe_http_content_length_bytes",
                             "Length of the response body", (), ("http", "json"))
STATUS_LEVEL = Series("probewatch_probe_status_level", "Status level the document reports", (), ("json",))
VALUE = Series("probewatch_probe_value", "Numeric field of the reply", ("field",), ("json", "udp"))
VALUE_FIELDS_DROPPED = Series(
    "probewatch_probe_value_fields_dropped",
    f"probewatch_probe_value fields of the last run dropped beyond the cap of {MAX_VALUE_FIELDS} per probe.",
    (), ("json", "udp"))
ICMP_RTT = Series("probewatch_probe_icmp_rtt_seconds", "Round trip times of the last run (avg and max)",
                  ("stat",), ("icmp",))
ICMP_LOSS = Series("probewatch_probe_icmp_loss_ratio",
                   "Share of echo requests of the last run left unanswered", (), ("icmp",))

CATALOGUE: dict[str, Series] = {s.name: s for s in (
    HTTP_CERT_EXPIRY, HTTP_CONTENT_LENGTH, STATUS_LEVEL, VALUE, VALUE_FIELDS_DROPPED, ICMP_RTT, ICMP_LOSS)}
