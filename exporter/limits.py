"""Bounds every probe definition meets, from the config file or the status API.

``data_problems`` walks raw decoded data (YAML or JSON) before it is typed: it
refuses what no option can mean and what would break later, far from the
input — strings with lone surrogates (they cannot be written as UTF-8: the
state file, the status page and /metrics would fail), overlong strings, NaN
and infinite numbers, integers beyond 2**53 (not exact as a float sample) and
nesting deeper than ``MAX_DEPTH``.  ``parse_json_body`` reads an API body
with the same bounds, so a RecursionError or a ``NaN`` literal is a 400 with
its place, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_STRING = 65536  # characters; a request body to send is the longest string an option holds
MAX_KEY = 256
MAX_INT = 2**53
MAX_ITEMS = 10000  # entries of one list or mapping
MAX_VALUES = 100000  # values in one definition (YAML aliases can multiply them)

# Shared fields.
MIN_PERIOD = 0.01
MAX_PERIOD = 7 * 86400.0
MIN_TIMEOUT = 0.001
MAX_FAILURES = 1000
MAX_NAME = 128
MAX_TARGET = 2048
MAX_LABELS = 32
MAX_LABEL_VALUE = 4096


def bad_text(text: str) -> str:
    """Why ``text`` cannot be stored or shown (empty when it can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (\\u{ord(text[exc.start]):04x}), not valid Unicode"
    return ""


def _flat_ok(value: dict[Any, Any]) -> bool:
    """True for a mapping of ASCII string keys to short ASCII strings, booleans and small
    integers: a probe as most configs write it, within every bound without the walk below."""
    if len(value) > MAX_ITEMS:
        return False
    for key, item in value.items():
        if type(key) is not str or len(key) > MAX_KEY or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING or not item.isascii():
                return False
        elif kind is int:
            if abs(item) > MAX_INT:
                return False
        elif kind is not bool:
            return False
    return True


def data_problems(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(key, message) for every value in ``value`` out of bounds; walks without recursion."""
    if isinstance(value, dict) and _flat_ok(value):
        return []
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [(prefix, value, 0)]
    seen = 0
    while stack:
        key, item, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            out.append((prefix, f"holds more than {MAX_VALUES} values"))
            break
        if depth > MAX_DEPTH:
            out.append((_short(key, 60), f"is nested more than {MAX_DEPTH} levels deep"))
            continue
        if isinstance(item, str):
            if why := bad_text(item):
                out.append((key, why))
            elif len(item) > MAX_STRING:
                out.append((key, f"is {len(item)} characters long; at most {MAX_STRING} are taken"))
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                out.append((key, f"{_short(item)} is out of range (at most 2**53 either way)"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                out.append((key, f"{item!r} is not a finite number"))
        elif isinstance(item, dict | list):
            if len(item) > MAX_ITEMS:
                out.append((key, f"holds {len(item)} entries; at most {MAX_ITEMS} are taken"))
                continue
            children = item.items() if isinstance(item, dict) else enumerate(item)
            child_items = []
            for k, v in children:
                if isinstance(item, dict):
                    name = str(k)
                    child = f"{key}.{name}" if key else name
                    if why := bad_text(name):
                        out.append((key or "(top level)", f"key {name!a} {why}"))
                        continue
                    if len(name) > MAX_KEY:
                        out.append((key or "(top level)",
                                    f"a key is {len(name)} characters long; at most {MAX_KEY} are taken"))
                        continue
                else:
                    child = f"{key}[{k}]"
                child_items.append((child, v, depth + 1))
            stack.extend(reversed(child_items))
    return out


def _short(value: Any, limit: int = 24) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number")


def parse_json_body(body: bytes) -> Any:
    """An API body as data; ValueError with a message fit for a client."""
    try:
        text = body.decode("utf-8") if body else "null"
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"body is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
