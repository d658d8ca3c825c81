"""Typed decoding of config blocks into dataclasses, with every error kept.

A kind declares its options as a dataclass; this module checks keys and types
against the annotations (str, int, float, bool, lists, str-keyed dicts, nested
dataclasses, Literal choices, unions, and ``Duration`` for time spans) and
collects one ``Problem`` per bad key instead of stopping at the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .durations import parse_duration
from .yamlsource import LineDict, LineList

# A float number of seconds, written in config as 500ms, 10s, 5m or seconds.
Duration = Annotated[float, "duration"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where it is."""

    line: int
    key: str
    message: str


class Problems(list[Problem]):
    def add(self, line: int, key: str, message: str) -> None:
        self.append(Problem(line, key, message))


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


def convert(value: Any, tp: Any, key: str, line: int, problems: Problems) -> Any:
    """Convert ``value`` to ``tp``; record problems under ``key``; raise _Bad on failure."""
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
        if key not in aliases:
            known = ", ".join(sorted(aliases))
            problems.add(kline, prefix + str(key), f"unknown key (known keys: {known})")
            continue
        name = aliases[key]
        with contextlib.suppress(_Bad):
            kwargs[name] = convert(value, hints[name], prefix + key, kline, problems)
    missing = [
        k
        for k, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and k not in kwargs
        and not any(p.key == prefix + f.metadata.get("key", k) for p in problems[before:])
    ]
    for k in missing:
        problems.add(base_line, prefix + fields[k].metadata.get("key", k), "is required")
    if len(problems) > before:
        return None
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        for key, message in check() or ():
            problems.add(_line(raw, key.split(".")[0].split("[")[0], base_line), prefix + key, message)
        if len(problems) > before:
            return None
    return obj


def describe_options(cls: Any) -> list[tuple[str, str, str]]:
    """(key, type, default) rows for ``probewatch kinds``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((f.metadata.get("key", f.name), _type_name(hints[f.name]), default))
    return rows
