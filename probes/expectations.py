"""Expectation checks shared by every kind that reads a reply.

Text: ``expect: "+OK POP3"`` is literal text the reply must contain;
``expect: {regex: "^220 .*ESMTP"}`` is a regular expression searched in the
reply.  Both are compiled once, at config load.

HTTP status codes: ``StatusSet`` reads codes, classes and ranges (``200-399``,
``2xx``, ``[200, 204]``).  JSON: ``JsonExpectation`` checks one value named by a
``JsonPath`` (``{path: "$.status", equals: true}``) and says which path held what.

Every configured regex runs with a bounded cost, whatever a peer sends: it is
matched by RE2 (google-re2), whose time grows linearly with the reply, so a
``.*x.*y`` on a 10 MB body takes milliseconds, not the minutes Python's
backtracking engine can take while it holds the event loop (its matcher keeps
the GIL, so a thread would not help).  Patterns RE2 cannot run (lookarounds,
backreferences, possessive forms) still work with Python's engine, but see
only the first ``BACKTRACKING_LIMIT`` characters of the reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import re2

# What a pattern RE2 cannot run is matched against: the reply's first 8 Ki characters
# (a triple .* with a lookaround costs ~0.06 s there, 2 s at 32 Ki, growing with the cube).
BACKTRACKING_LIMIT = 8 * 1024
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a pattern RE2 refuses is not an error: Python's engine takes it


class Pattern:
    """A compiled configured regex; ``search`` costs at most linear time (see the module doc)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._python = re.compile(pattern)  # the syntax check, with Python's messages
        try:
            self._re2: Any = re2.compile(pattern, _RE2_OPTIONS)
        except re2.error:
            self._re2 = None

    @property
    def linear(self) -> bool:
        """True when RE2 runs the pattern (no size bound on the text)."""
        return self._re2 is not None

    def search(self, text: str) -> Any:
        """A match object (``group()``) or None."""
        if self._re2 is not None:
            return self._re2.search(text)
        return self._python.search(text[:BACKTRACKING_LIMIT])

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


@dataclass
class RegexText:
    """``{regex: PATTERN}``: a regular expression the reply must match somewhere."""

    regex: str
    compiled: Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def check(self) -> list[tuple[str, str]]:
        try:
            self.compiled = compile_regex(self.regex)
        except ValueError as exc:
            return [("regex", str(exc))]
        return []


def compile_regex(pattern: str) -> Pattern:
    """Compile a configured regex; raise ValueError with a message fit for a user."""
    try:
        return Pattern(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


TextExpectation = str | RegexText


class TextMatcher:
    """Finds an expectation in a growing reply (literal text or regex)."""

    def __init__(self, expect: TextExpectation) -> None:
        if isinstance(expect, RegexText):
            self._regex: Pattern | None = expect.compiled or compile_regex(expect.regex)
            self._literal = ""
            self.describe = f"regex {expect.regex!r}"
        else:
            self._regex = None
            self._literal = expect
            self.describe = repr(expect)

    def found_in(self, text: str) -> bool:
        if self._regex is not None:
            return self._regex.search(text) is not None
        return self._literal in text


def decode_reply(data: bytes) -> str:
    """Bytes from a peer as text; undecodable bytes are replaced, never an error."""
    return data.decode("utf-8", errors="replace")


def shown(text: Any, limit: int = 80) -> str:
    """A short repr of what a peer sent, for failure messages."""
    out = repr(text)
    return out if len(out) <= limit else out[: limit - 4] + "...'"


# --- HTTP status-code sets --------------------------------------------------

# The option type: ``200``, ``"2xx"``, ``"200-399"``, ``"200, 204"`` or a list of those.
StatusCodes = int | str | list[int | str]

_CLASS_RE = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_RANGE_RE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")


@dataclass(frozen=True)
class StatusSet:
    """A set of HTTP status codes built from codes, classes (2xx) and ranges (200-399)."""

    ranges: tuple[tuple[int, int], ...]
    text: str

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    @classmethod
    def parse(cls, value: StatusCodes) -> StatusSet:
        """Build the set; raise ValueError with a message fit for a user."""
        items = value if isinstance(value, list) else [value]
        parts: list[str] = []
        for item in items:
            parts.extend(p.strip() for p in str(item).split(","))
        if not any(parts):
            raise ValueError("must name at least one status code, class (2xx) or range (200-399)")
        ranges = []
        for part in parts:
            ranges.append(_status_range(part))
        return cls(tuple(ranges), ", ".join(parts))


def _status_range(part: str) -> tuple[int, int]:
    if m := _CLASS_RE.match(part):
        digit = int(m.group(1))
        return digit * 100, digit * 100 + 99
    if m := _RANGE_RE.match(part):
        lo, hi = int(m.group(1)), int(m.group(2))
    elif part.isdigit():
        lo = hi = int(part)
    else:
        raise ValueError(f"{part!r} is not a status code (200), class (2xx) or range (200-399)")
    for code in (lo, hi):
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code (100-599)")
    if lo > hi:
        raise ValueError(f"range {part!r} runs backwards")
    return lo, hi


# --- JSON paths ----------------------------------------------------------------

_NAME_RE = re.compile(r"[^.\[\]\s'\"]+")
_INDEX_RE = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED_RE = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")


class JsonPath:
    """A path into a JSON document: ``$.status``, ``$.checks[0].state``, ``$['a.b']``.

    The leading ``$.`` may be left out (``status`` is ``$.status``).  Names
    follow dots, list indexes (negative from the end) and quoted names go in
    brackets.  Wildcards, filters and recursive descent are not part of the
    language: a path names one value.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.steps = _parse_path(text)

    def find(self, doc: Any) -> tuple[bool, Any]:
        """(True, value) when the path exists in ``doc``, else (False, None)."""
        node = doc
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return False, None
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    return False, None
                node = node[step]
        return True, node

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"


def _parse_path(text: str) -> list[str | int]:
    src = text.strip()
    if not src:
        raise ValueError("invalid JSON path '': it is empty")
    # Positions in messages count in the text as written, without an implied "$.".
    shift = 0 if src.startswith("$") else 2
    src = src if src.startswith("$") else "$." + src
    pos = 1
    steps: list[str | int] = []

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid JSON path {text!r}: {why}")

    while pos < len(src):
        ch, at = src[pos], pos - shift
        if ch == ".":
            if src.startswith("..", pos):
                raise bad("recursive descent (..) is not supported")
            m = _NAME_RE.match(src, pos + 1)
            if not m:
                raise bad(f"expected a field name after '.' at position {at}")
            if m.group() == "*":
                raise bad(_NO_WILDCARDS)
            steps.append(m.group())
            pos = m.end()
        elif ch == "[":
            if m := _INDEX_RE.match(src, pos):
                steps.append(int(m.group(1)))
            elif m := _QUOTED_RE.match(src, pos):
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
            elif src.startswith(("[*", "[?", "[:"), pos) or ":" in src[pos:].split("]")[0]:
                raise bad(_NO_WILDCARDS)
            else:
                raise bad(f"expected [N] or ['name'] at position {at}")
            pos = m.end()
        else:
            raise bad(f"unexpected {ch!r} at position {at}")
    return steps


_NO_WILDCARDS = "wildcards, slices and filters are not supported; a path names one value"


# --- JSON expectations ---------------------------------------------------------


@dataclass
class JsonExpectation:
    """One check on a JSON reply: ``{path: "$.status", equals: true}``.

    With only ``path`` the value must exist.  ``equals`` / ``not_equals``
    compare JSON values strictly (true is not 1, "1" is not 1); ``regex`` is
    searched in the value's text; ``min`` / ``max`` bound a number;
    ``exists: false`` asks for the path to be absent.

    Options:
        path: the JSON path of the value ($.status, $.items[0].name).
        equals: the value must equal this, strictly (true is not 1).
        not_equals: the value must not equal this.
        regex: a regular expression searched in the value's text.
        min: the value must be a number at least this.
        max: the value must be a number at most this.
        exists: false: the path must be absent.
    """

    path: str
    equals: Any = None
    not_equals: Any = None
    regex: str = ""
    min: float | None = None
    max: float | None = None
    exists: bool = True
    compiled_path: JsonPath | None = field(default=None, init=False, repr=False, compare=False)
    compiled_regex: Pattern | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        try:
            self.compiled_path = JsonPath(self.path)
        except ValueError as exc:
            out.append(("path", str(exc)))
        if self.regex:
            try:
                self.compiled_regex = compile_regex(self.regex)
            except ValueError as exc:
                out.append(("regex", str(exc)))
        compares = [
            k for k in ("equals", "not_equals", "min", "max") if getattr(self, k) is not None
        ]
        if self.regex:
            compares.append("regex")
        if not self.exists and compares:
            out.append(("exists", f"false cannot be combined with {', '.join(compares)}"))
        if self.min is not None and self.max is not None and self.min > self.max:
            out.append(("min", f"{self.min:g} is greater than max ({self.max:g})"))
        return out

    def failure(self, doc: Any) -> str:
        """Why ``doc`` does not meet this expectation; empty when it does."""
        path = self.compiled_path or JsonPath(self.path)
        found, value = path.find(doc)
        where = self.path
        if not self.exists:
            return f"{where} is {as_json(value)}, expected it to be absent" if found else ""
        if not found:
            return f"{where} is missing"
        held = f"{where} is {as_json(value)}"
        if self.equals is not None and not same_json(value, self.equals):
            return f"{held}, expected {as_json(self.equals)}"
        if self.not_equals is not None and same_json(value, self.not_equals):
            return f"{held}, expected anything but {as_json(self.not_equals)}"
        if self.regex:
            pattern = self.compiled_regex or compile_regex(self.regex)
            text = value if isinstance(value, str) else json.dumps(value)
            if not pattern.search(text):
                return f"{held}, expected to match regex {self.regex!r}"
        if self.min is not None or self.max is not None:
            if not is_number(value):
                return f"{held}, expected a number"
            if self.min is not None and value < self.min:
                return f"{held}, expected at least {self.min:g}"
            if self.max is not None and value > self.max:
                return f"{held}, expected at most {self.max:g}"
        return ""


def json_failures(expectations: list[JsonExpectation], doc: Any) -> list[str]:
    """Every unmet expectation, each saying which path held what."""
    return [msg for exp in expectations if (msg := exp.failure(doc))]


def load_json(data: bytes | str, what: str = "body") -> Any:
    """Parse a JSON reply; raise ValueError saying why it is not JSON and what came."""
    text = decode_reply(data) if isinstance(data, bytes) else data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {shown(text)}"
        ) from None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: booleans equal only booleans, 1 equals 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def as_json(value: Any, limit: int = 60) -> str:
    """A value as JSON text, shortened, for failure messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
