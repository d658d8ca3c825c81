"""The catalogue of extra series: the one source of every kind's readings and of docs/metrics.md."""

from __future__ import annotations

import ast
import re

import pytest

from probes import readings
from probes.base import Reading
from tests.support import ROOT


def test_docs_list_exactly_the_catalogue() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text[text.index("## Per kind (extra readings)"):]
    section = section[:section.index("\n## ", 4)]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(probewatch_[a-z_]+)` \|([^|]*)\|([^|]*)\|(.*)\|$", line)
        if m:
            labels = tuple(re.findall(r"`([a-z_]+)`", m.group(2)))
            kinds = tuple(k.strip() for k in m.group(3).split(","))
            rows[m.group(1)] = (labels, kinds, m.group(4).strip())
    assert rows == {s.name: (s.labels, s.kinds, s.help) for s in readings.CATALOGUE.values()}


def test_a_reading_takes_the_catalogue_help_and_label_names() -> None:
    got = readings.VALUE.reading(3, "load1")
    assert got == Reading("probewatch_probe_value", 3.0, "Numeric field of the reply", (("field", "load1"),))
    with pytest.raises(ValueError, match="takes labels"):
        readings.ICMP_RTT.reading(0.1)  # stat is missing


def test_no_kind_builds_a_reading_outside_the_catalogue() -> None:
    """A Reading(...) written in a kind would bring its own HELP: one series, two HELP lines."""
    offenders = []
    for path in sorted((ROOT / "probes").glob("*.py")):
        if path.name in ("base.py", "readings.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Reading":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_json_and_udp_values_share_one_help_line() -> None:
    from probes import json_status, udp

    assert json_status.VALUE == udp.VALUE_METRIC == readings.VALUE.name
    (reading,) = udp.value_readings({"operations": {"load_average": {"load1": 0.5}}})
    assert reading.help == readings.VALUE.help and reading.labels == (("field", "load1"),)
