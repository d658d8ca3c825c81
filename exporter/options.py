"""Typed decoding of config blocks into dataclasses, with every error kept.

A kind declares its options as a dataclass; this module checks keys and types
against the annotations (str, int, float, bool, lists, str-keyed dicts, nested
dataclasses, Literal choices, unions, and ``Duration`` for time spans) and
collects one ``ConfigProblem`` (exporter/problems.py) per bad key instead of
stopping at the first.  How ``probewatch kinds`` lists the same options is
exporter/option_listing.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from probes.durations import Duration, parse_duration

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
