"""Typed decoding of config blocks into dataclasses, with every error kept.

A kind declares its options as a dataclass; this module checks keys and types
against the annotations (str, int, float, bool, lists, str-keyed dicts, nested
dataclasses, Literal choices, unions, and ``Duration`` for time spans) and
collects one ``ConfigProblem`` (exporter/problems.py) per bad key instead of
stopping at the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml

from probes.durations import Duration, format_duration, parse_duration

from .problems import Problems
from .yamlsource import LineDict, LineList


def _line(container: Any, key: Any, default: int) -> int:
    if isinstance(container, LineDict) and isinstance(key, str):
        return container.line_of(key)
    if isinstance(container, LineList) and isinstance(key, int):
        return container.line_of(key)
    return default


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is Duration:
        return "a duration"
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Bad(Exception):
    pass


# Names users bring from the tools probewatch replaces (Moniteur's scripts and arguments).
SYNONYMS = {"ping": "icmp", "connect": "tcp", "script": "kind", "arguments": "target",
            "hello_message": "send", "success_message": "expect", "bye_message": "bye"}


def did_you_mean(word: Any, choices: Any) -> str | None:
    """The choice ``word`` was most likely meant to be (difflib, then known synonyms), or None."""
    text, options = str(word), [str(c) for c in choices]
    synonym = SYNONYMS.get(text.lower())
    if synonym in options:
        return synonym
    folded = {c.lower(): c for c in options}
    if text.lower() in folded:
        return folded[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def hint(word: Any, choices: Any) -> str:
    """``"; did you mean X?"`` when one choice is close to ``word``, else empty."""
    guess = did_you_mean(word, choices)
    return f"; did you mean {guess}?" if guess else ""


def convert(value: Any, tp: Any, key: str, line: int, problems: Problems) -> Any:
    """Convert ``value`` to ``tp``; record problems under ``key``; raise _Bad on failure."""
    kind = type(value)
    if tp is kind and kind in _PLAIN:  # the common case, without the typing introspection below
        return value
    origin = get_origin(tp)
    if tp is Duration:
        try:
            return parse_duration(value)
        except ValueError as exc:
            problems.add(line, key, str(exc))
            raise _Bad from None
    if origin is Annotated:
        return convert(value, get_args(tp)[0], key, line, problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own message is the clearest
            return convert(value, arms[0], key, line, problems)
        shaped: Problems | None = None
        for arg in args:
            if arg is type(None):
                continue
            trial = Problems()
            try:
                return convert(value, arg, key, line, trial)
            except _Bad:
                if _same_shape(value, arg):
                    shaped = trial
        if shaped:  # the value has this arm's shape: its own problems say more
            problems.extend(shaped)
        else:
            problems.add(line, key, f"must be {_type_name(tp)}, not {_describe(value)}")
        raise _Bad
    if origin is Literal:
        if value in get_args(tp):
            return value
        problems.add(line, key, f"must be {_type_name(tp)}, not {value!r}")
        raise _Bad
    if origin is list:
        if not isinstance(value, list):
            problems.add(line, key, f"must be {_type_name(tp)}, not {_describe(value)}")
            raise _Bad
        (item_tp,) = get_args(tp)
        out, bad = [], False
        for i, item in enumerate(value):
            try:
                out.append(convert(item, item_tp, f"{key}[{i}]", _line(value, i, line), problems))
            except _Bad:
                bad = True
        if bad:
            raise _Bad
        return out
    if origin is dict:
        if not isinstance(value, dict):
            problems.add(line, key, f"must be a mapping, not {_describe(value)}")
            raise _Bad
        _, val_tp = get_args(tp)
        result, bad = {}, False
        for k, v in value.items():
            try:
                result[str(k)] = convert(v, val_tp, f"{key}.{k}", _line(value, k, line), problems)
            except _Bad:
                bad = True
        if bad:
            raise _Bad
        return result
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.add(line, key, f"must be a mapping, not {_describe(value)}")
            raise _Bad
        before = len(problems)
        obj = build(tp, value, problems, prefix=key + ".", line=line)
        if obj is None or len(problems) > before:
            raise _Bad
        return obj
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    problems.add(line, key, f"must be {_type_name(tp)}, not {_describe(value)}")
    raise _Bad


# Types whose values YAML and JSON give as they are (an int is not taken for a float or a bool).
_PLAIN = frozenset({str, int, bool})


def _same_shape(value: Any, tp: Any) -> bool:
    origin = get_origin(tp) or tp
    if isinstance(value, dict):
        return origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp))
    if isinstance(value, list):
        return origin is list
    return False


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@functools.cache
def _shape(cls: Any) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]], dict[str, str]]:
    """Type hints, init fields and key aliases of a dataclass (resolved once per class)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    aliases = {f.metadata.get("key", f.name): f.name for f in fields.values()}
    return hints, fields, aliases


@functools.cache
def _plan(cls: Any) -> tuple[tuple[str, ...], bool]:
    """The required fields of a dataclass and whether it has a ``check()`` (once per class)."""
    _, fields, _ = _shape(cls)
    required = tuple(k for k, f in fields.items()
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return required, callable(getattr(cls, "check", None))


def option_shape(tp: Any) -> tuple[dict[str, Any], dict[str, str]] | None:
    """(type hints, key -> field name) of the dataclass in ``tp`` (Optional unwrapped)."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        tp = next((a for a in get_args(tp) if dataclasses.is_dataclass(a)), None)
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return None
    hints, _, aliases = _shape(tp)
    return hints, aliases


def old_spelling(cls: Any, key: str, value: Any, prefix: str) -> str:
    """Why ``key: value`` is an old spelling of ``cls``'s options, naming the new one (else empty).

    An options class lists keys that moved in ``MOVED`` (``{"ca_file": "tls.ca_file"}``,
    answered "moved to PREFIX.tls.ca_file") and may judge old values of a key it
    still has with ``old_value(key, value)`` (a message, or empty).
    """
    moved = getattr(cls, "MOVED", {}).get(key)
    if moved is not None:
        return f"moved to {prefix}{moved}"
    judge = getattr(cls, "old_value", None)
    return judge(key, value) if callable(judge) else ""


def build(cls: Any, raw: dict[str, Any], problems: Problems, prefix: str = "", line: int = 0) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``; None when any key was bad.

    After the fields convert, ``cls.check(self)`` may return (key, message)
    pairs for checks across fields or compile-time checks (regexes, paths).
    """
    hints, fields, aliases = _shape(cls)
    kwargs: dict[str, Any] = {}
    before = len(problems)
    base_line = raw.line if isinstance(raw, LineDict) and raw.line else line
    for key, value in raw.items():
        kline = _line(raw, key, base_line)
        if why := old_spelling(cls, str(key), value, prefix):
            problems.add(kline, prefix + str(key), why)
            continue
        if key not in aliases:
            known = ", ".join(sorted(aliases))
            problems.add(kline, prefix + str(key), f"unknown key{hint(key, aliases)} (known keys: {known})")
            continue
        name = aliases[key]
        with contextlib.suppress(_Bad):
            kwargs[name] = convert(value, hints[name], prefix + key, kline, problems)
    required, has_check = _plan(cls)
    missing = [
        k
        for k in required
        if k not in kwargs
        and not any(p.key == prefix + fields[k].metadata.get("key", k) for p in problems[before:])
    ]
    for k in missing:
        problems.add(base_line, prefix + fields[k].metadata.get("key", k), "is required")
    if len(problems) > before:
        return None
    obj = cls(**kwargs)
    if has_check and callable(check := getattr(obj, "check", None)):
        problems.add_pairs(check() or (), lambda key: _line(raw, key.split(".")[0].split("[")[0], base_line),
                           prefix)
        if len(problems) > before:
            return None
    return obj


# --- `probewatch kinds`: options as a user writes them ------------------------------

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
