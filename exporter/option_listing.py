"""A kind's options as ``probewatch kinds`` lists them: key, type and default as written in
YAML, and the description from the options class's docstring.

Read from the kinds' own code (dataclass fields, type hints, defaults), so the
listing cannot drift from what exporter/options.py decodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml

from probes.durations import Duration, format_duration

# An option's description lives in its class's docstring, in one section:
#
#     Options:
#         send: written after connecting.
#         success_state (default CONFIRMED): how far a call must get.
#
# "(default X)" is for options whose code default is unset or empty (None, "",
# [], {}) but whose effective value is known: the value shown instead of the
# code's.  Continuation lines are indented further.
_DOC_LINE = re.compile(r"^(\s+)([a-z_][a-z0-9_]*)(?: \(default (.+?)\))?: (.+)$")


@dataclass(frozen=True)
class OptionRow:
    """One line of ``probewatch kinds``: key (dotted for nested blocks), type, default, description."""

    key: str
    type: str
    default: str
    doc: str


def option_docs(cls: Any) -> dict[str, tuple[str | None, str]]:
    """key -> (default override, description) from the "Options:" sections of ``cls`` and its bases."""
    out: dict[str, tuple[str | None, str]] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        lines = (klass.__dict__.get("__doc__") or "").splitlines()
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == "Options:")
        except StopIteration:
            continue
        indent, key = 0, ""
        for line in lines[start + 1:]:
            if not line.strip():
                break
            m = _DOC_LINE.match(line)
            if m and (not indent or len(m.group(1)) == indent):
                indent, key = len(m.group(1)), m.group(2)
                out[key] = (m.group(3), m.group(4).strip())
            elif key:
                default, text = out[key]
                out[key] = (default, f"{text} {line.strip()}")
    return out


@functools.cache
def _special_types() -> dict[Any, str]:
    from probes.expectations import Expectations, StatusCodes

    return {StatusCodes: "status codes: 200, 2xx, 200-399, or a list of them",
            Expectations: "list of {text|regex|not_regex: ...} or {path: ..., equals|min|max...: ...}"
                          " (a lone text or mapping: one item)",
            list[str | dict[str, list[str]]]: "list of names or {name: [arguments]}"}


_PLURAL = {"string": "strings", "integer": "integers", "number": "numbers", "boolean": "booleans",
           "duration": "durations", "mapping": "mappings", "any value": "values"}


def yaml_type(tp: Any) -> str:
    """The type of an option as a user writes it in YAML: "list of integers", "duration"."""
    special = _special_types()
    with contextlib.suppress(TypeError):
        if tp in special:
            return special[tp]
    origin = get_origin(tp)
    if tp is Duration:
        return "duration"
    if origin is Annotated:
        return yaml_type(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        arms = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(yaml_type(a) for a in arms)
    if origin is Literal:
        return "one of " + ", ".join(yaml_value(a) for a in get_args(tp))
    if origin is list:
        item = yaml_type(get_args(tp)[0])
        return "list of " + " or ".join(_PLURAL.get(part, part) for part in item.split(" or "))
    if origin is dict:
        value = get_args(tp)[1]
        return "mapping" if value is Any else f"mapping of string to {yaml_type(value)}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any value"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def yaml_value(value: Any, tp: Any = None) -> str:
    """``value`` written as YAML in flow style: ``""``, ``[]``, ``10s``, ``{OK: 0}``, ``CONFIRMED``."""
    if tp is Duration and isinstance(value, int | float):
        return format_duration(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(c in value for c in ":#{}[],&*!|>'\"%@`\\")
        if plain and yaml.safe_load(value) == value:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if dataclasses.is_dataclass(value):
        return "{}"
    return str(value)


def _nested(tp: Any) -> tuple[Any, str] | None:
    """The dataclass whose keys are listed below ``tp``'s key, and the key suffix ("" or "[]")."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        found = [n for a in get_args(tp) if a is not type(None) and (n := _nested(a))]
        return found[0] if found else None  # expect: a list of items or a lone item: list them
    if origin is list:
        inner = _nested(get_args(tp)[0])
        return (inner[0], "[]" + inner[1]) if inner else None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp, ""
    return None


def describe_options(cls: Any, prefix: str = "") -> list[OptionRow]:
    """Every option of ``cls``, nested blocks as dotted keys (``tls.ca_file``, ``expect[].path``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = option_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        key = f.metadata.get("key", f.name)
        override, doc = docs.get(key) or docs.get(f.name) or (None, "")
        if f.default is not dataclasses.MISSING:
            value: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = dataclasses.MISSING
        if value is dataclasses.MISSING:
            default = "required"
        elif override and (value is None or value in ("", [], {})):
            default = override
        else:
            default = "unset" if value is None else yaml_value(value, tp)
        rows.append(OptionRow(prefix + key, yaml_type(tp), default, doc))
        nested = _nested(tp)
        if nested is not None:
            rows.extend(describe_options(nested[0], f"{prefix}{key}{nested[1]}."))
    return rows
