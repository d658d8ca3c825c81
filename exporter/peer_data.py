"""What a peer sent, made safe to store, show and export, in one place.

Every Result passes here before the state records it (exporter.probe_state), so no
kind can forget: text holding lone surrogates (JSON's ``"\\ud800"``) would make
the status page and /metrics fail to encode, so they become U+FFFD; a label
value of a reading is cut to ``MAX_FIELD_CHARS``; and a probe exports at most
``MAX_VALUE_FIELDS`` probewatch_probe_value series per run (the first ones in
the kind's order), the number dropped beyond that going to
probewatch_probe_value_fields_dropped, so one hostile reply cannot create
thousands of series.
"""

from __future__ import annotations

import re

from probes import readings as catalogue
from probes.base import Reading, Result
from probes.redact import mask_text

MAX_VALUE_FIELDS = catalogue.MAX_VALUE_FIELDS
MAX_FIELD_CHARS = 128
VALUE_METRIC = catalogue.VALUE.name
DROPPED_METRIC = catalogue.VALUE_FIELDS_DROPPED.name

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced, so it encodes as UTF-8."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _clean_label(value: str) -> str:
    value = clean_text(value)
    return value if len(value) <= MAX_FIELD_CHARS else value[: MAX_FIELD_CHARS - 1] + "…"


def clean_result(result: Result) -> None:
    """Make ``result`` safe in place (see the module docstring)."""
    result.message = mask_text(clean_text(result.message))
    if result.level_name is not None:
        result.level_name = clean_text(result.level_name)
    kept: list[Reading] = []
    values = dropped = 0
    for reading in result.readings:
        if reading.metric == VALUE_METRIC:
            values += 1
            if values > MAX_VALUE_FIELDS:
                dropped += 1
                continue
        labels = tuple((k, _clean_label(v)) for k, v in reading.labels)
        kept.append(reading if labels == reading.labels else
                    Reading(reading.metric, reading.value, reading.help, labels))
    if dropped:
        kept.append(catalogue.VALUE_FIELDS_DROPPED.reading(dropped))
    result.readings = kept
