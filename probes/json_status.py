"""kind json: fetch a JSON status document (Megaphone style) and read its level.

    - name: megaphone
      kind: json
      target: http://127.0.0.1:18001/status
      json:
        values: [queue_depth]      # numeric fields exported as probewatch_probe_value

The document's ``status`` field (``status_field``) names a level from the level
table (default OK=0, Unknown=1, Warning=2, Critical=3; names case-insensitive);
it is exported as probewatch_probe_status_level and the run is up only for a
level in ``ok_levels``.  The ``message`` field (``message_field``) becomes the
probe's message.  The request side (method, headers, tls, auth, proxy ...) is
the http kind's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import readings as catalogue
from .base import Result, truncate
from .expectations import (
    Expectation,
    Expectations,
    JsonPath,
    as_json,
    expectation_list,
    is_number,
    judge,
    load_json,
)
from .http import Fetched, RequestOptions, RequestProbe

STATUS_LEVEL = catalogue.STATUS_LEVEL.name
VALUE = catalogue.VALUE.name

DEFAULT_LEVELS = {"OK": 0, "Unknown": 1, "Warning": 2, "Critical": 3}


@dataclass
class JsonOptions(RequestOptions):
    """``json:`` block: the request (as for http), then how to read the document.

    Options:
        status_field: path of the level in the document.
        message_field: path of the text that becomes the probe's message.
        levels: level names and their numbers; names match case-insensitively.
        ok_levels: levels for which the probe is up; each must be in levels.
        values: paths of numeric fields exported as probewatch_probe_value{field="..."}.
        expect: what the document must hold: {path: ...} items (and text, {regex: ...},
            {not_regex: ...} on the body), checked after the level is read.
    """

    status_field: str = "status"
    message_field: str = "message"
    levels: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    ok_levels: list[str] = field(default_factory=lambda: ["OK"])
    values: list[str] = field(default_factory=list)
    expect: Expectations = field(default_factory=list)
    # Compiled by check(): paths, and level names folded to lower case.
    status_path: JsonPath = field(default=JsonPath("status"), init=False, repr=False)
    message_path: JsonPath = field(default=JsonPath("message"), init=False, repr=False)
    value_paths: list[JsonPath] = field(default_factory=list, init=False, repr=False)
    by_name: dict[str, tuple[str, int]] = field(default_factory=dict, init=False, repr=False)
    expectations: list[Expectation] = field(default_factory=list, init=False, repr=False)

    def check(self) -> list[tuple[str, str]]:
        out = super().check()
        self.expectations = expectation_list(self.expect)
        for key in ("status_field", "message_field"):
            try:
                setattr(self, key.replace("_field", "_path"), JsonPath(getattr(self, key)))
            except ValueError as exc:
                out.append((key, str(exc)))
        self.value_paths = []
        for i, text in enumerate(self.values):
            try:
                self.value_paths.append(JsonPath(text))
            except ValueError as exc:
                out.append((f"values[{i}]", str(exc)))
            if text in self.values[:i]:
                out.append((f"values[{i}]", f"{text!r} is listed twice"))
        if not self.levels:
            out.append(("levels", "must name at least one level"))
        self.by_name = {}
        for name, number in self.levels.items():
            if name.lower() in self.by_name:
                out.append((f"levels.{name}", "is listed twice (names are case-insensitive)"))
            self.by_name[name.lower()] = (name, number)
        for i, name in enumerate(self.ok_levels):
            if name.lower() not in self.by_name:
                known = ", ".join(self.levels)
                out.append((f"ok_levels[{i}]", f"{name!r} is not in levels ({known})"))
        return out

    def level_of(self, raw: Any) -> tuple[str, int] | None:
        """(name, number) for a status value: a level name, or a level's number."""
        if isinstance(raw, str):
            return self.by_name.get(raw.strip().lower())
        if is_number(raw):
            return next(((n, v) for n, v in self.levels.items() if v == raw), None)
        return None


class JsonProbe(RequestProbe):
    """Reads a status document; up while its level is one of ok_levels."""

    Options = JsonOptions

    def judge(self, got: Fetched) -> Result:
        return read_status(got, self.spec.options)


def read_status(got: Fetched, opts: JsonOptions) -> Result:
    code, readings = got.status, got.readings
    try:
        doc = load_json(got.body)
    except ValueError as exc:
        return Result.fail("unexpected_response", str(exc), code=code, readings=readings)
    found, raw = opts.status_path.find(doc)
    if not found:
        return Result.fail(
            "unexpected_response", f"the document has no {opts.status_field} field: {as_json(doc)}",
            code=code, readings=readings,
        )
    level = opts.level_of(raw)
    if level is None:
        known = ", ".join(opts.levels)
        return Result.fail(
            "unexpected_response",
            f"{opts.status_field} is {as_json(raw)}, not a known level ({known})",
            code=code, readings=readings,
        )
    name, number = level
    readings.append(catalogue.STATUS_LEVEL.reading(number))
    for text, path in zip(opts.values, opts.value_paths, strict=True):
        has, value = path.find(doc)
        if has and is_number(value):
            readings.append(catalogue.VALUE.reading(value, text))
    has_message, message = opts.message_path.find(doc)
    shown = (message if isinstance(message, str) else as_json(message)) if has_message else ""
    shown = truncate(shown) or f"{opts.status_field} is {name}"
    kw: dict[str, Any] = {"code": code, "readings": readings, "level": number, "level_name": name,
                          "document": doc}
    items = opts.expectations
    if items and (unmet := judge(items, got.text if any(not i.path for i in items) else "",
                                 "body", got=False, doc=doc)):
        return Result.fail("unexpected_response", truncate(unmet), **kw)
    if name.lower() not in {n.lower() for n in opts.ok_levels}:
        return Result.fail("unexpected_response", shown, **kw)
    return Result.ok(message=shown, **kw)
