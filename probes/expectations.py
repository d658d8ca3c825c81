"""The one expectation language of every kind that reads a reply (tcp, udp, http, json).

``expect`` is a list; each item is one check, and ``judge(items, reply)`` returns
the first unmet item's message (empty when all hold):

- ``{text: "+OK POP3"}``: literal text the reply must contain;
- ``{regex: "^220 .*ESMTP"}``: a regular expression searched in the reply;
- ``{not_regex: "error"}``: a regular expression that must not be found;
- ``{path: "$.status", equals: true}``: a check of one value of a JSON reply
  (``equals``, ``not_equals``, ``regex``, ``min``, ``max``, ``exists``).

A lone text (``expect: "+OK"``) is a one-item list of ``{text: ...}``, a lone
mapping a one-item list.  Everything is compiled once, at config load.

HTTP status codes: ``StatusSet`` reads codes, classes and ranges (``200-399``,
``2xx``, ``[200, 204]``).

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


def compile_regex(pattern: str) -> Pattern:
    """Compile a configured regex; raise ValueError with a message fit for a user."""
    try:
        return Pattern(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


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


# --- expectations ----------------------------------------------------------------


@dataclass
class Expectation:
    """One item of an ``expect`` list: text, regex, not_regex, or a JSON path check.

    A path item checks one value of the reply parsed as JSON: with only
    ``path`` the value must exist; ``equals`` / ``not_equals`` compare JSON
    values strictly (true is not 1, "1" is not 1); ``regex`` is searched in the
    value's text; ``min`` / ``max`` bound a number; ``exists: false`` asks for
    the path to be absent.  Without ``path``, exactly one of ``text``, ``regex``
    and ``not_regex`` applies to the whole reply.

    Options:
        text: literal text the reply must contain.
        regex: a regular expression searched in the reply (with path: in the value's text).
        not_regex: a regular expression that must not be found in the reply.
        path: the JSON path of a value (the reply must then be JSON): $.status, $.items[0].name.
        equals: the value must equal this, strictly (true is not 1).
        not_equals: the value must not equal this.
        min: the value must be a number at least this.
        max: the value must be a number at most this.
        exists: false: the path must be absent.
    """

    path: str = ""
    equals: Any = None
    not_equals: Any = None
    regex: str = ""
    min: float | None = None
    max: float | None = None
    exists: bool = True
    text: str = ""
    not_regex: str = ""
    compiled_path: JsonPath | None = field(default=None, init=False, repr=False, compare=False)
    compiled_regex: Pattern | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def check(self) -> list[tuple[str, str]]:
        if not self.path:
            return self._check_text()
        out: list[tuple[str, str]] = []
        try:
            self.compiled_path = JsonPath(self.path)
        except ValueError as exc:
            out.append(("path", str(exc)))
        out += [(key, "cannot be combined with path (a path item checks one JSON value;"
                 " put it in an item of its own)") for key in ("text", "not_regex") if getattr(self, key)]
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

    def _check_text(self) -> list[tuple[str, str]]:
        json_keys = [k for k in ("equals", "not_equals", "min", "max") if getattr(self, k) is not None]
        if not self.exists:
            json_keys.append("exists")
        if json_keys:
            return [(json_keys[0], "needs path (the JSON value it checks)")]
        given = [k for k in ("text", "regex", "not_regex") if getattr(self, k)]
        if not given:
            return [("", "an expectation needs one of text, regex, not_regex or path")]
        if len(given) > 1:
            return [(given[1], f"set one of text, regex and not_regex per item, not {' and '.join(given)}"
                     " (each check is an item of its own)")]
        if self.text:
            return []
        key = given[0]
        try:
            self.compiled_regex = compile_regex(getattr(self, key))
        except ValueError as exc:
            return [(key, str(exc))]
        return []

    @property
    def describe(self) -> str:
        """What the item asks for, as failure and success messages name it."""
        if self.path:
            return self.path
        if self.text:
            return repr(self.text)
        return f"regex {(self.regex or self.not_regex)!r}"

    def _pattern(self) -> Pattern:
        if self.compiled_regex is None:
            self.compiled_regex = compile_regex(self.regex or self.not_regex)
        return self.compiled_regex

    def text_failure(self, text: str, what: str = "reply", got: bool = True) -> str:
        """Why a text, regex or not_regex item is unmet by ``text``; empty when it holds."""
        if self.not_regex:
            if m := self._pattern().search(text):
                return f"{what} matches regex {self.not_regex!r} ({m.group()[:40]!r})"
            return ""
        if self.text:
            if self.text in text:
                return ""
            message = f"{what} lacks {self.text!r}"
        elif self._pattern().search(text) is not None:
            return ""
        else:
            message = f"{what} does not match regex {self.regex!r}"
        return f"{message}: got {shown(text)}" if got else message

    def failure(self, doc: Any) -> str:
        """Why JSON document ``doc`` does not meet this path item; empty when it does."""
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
            pattern = self._pattern()
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


JsonExpectation = Expectation  # a path item: the name the JSON checks had before one language

# The option type of ``expect``: a list of items, a lone item, or a lone text.
Expectations = list[Expectation] | Expectation | str


def expectation_list(value: Expectations | None) -> list[Expectation]:
    """``expect`` as the list it stands for (a lone text is one text item)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [Expectation(text=value)]
    return [value] if isinstance(value, Expectation) else list(value)


_UNPARSED: Any = object()


def judge(items: list[Expectation], reply: str, what: str = "reply", got: bool = True,
          doc: Any = _UNPARSED) -> str:
    """The first unmet item's message, empty when every item holds.

    ``reply`` is the reply's text, ``what`` names it in messages ("reply",
    "body"); ``got`` adds what came to a text item's failure.  Path items read
    ``doc``, or the reply parsed as JSON (not JSON: that is the message).
    """
    for item in items:
        if item.path:
            if doc is _UNPARSED:
                try:
                    doc = load_json(reply, what)
                except ValueError as exc:
                    return str(exc)
            message = item.failure(doc)
        else:
            message = item.text_failure(reply, what, got)
        if message:
            return message
    return ""


def json_failures(expectations: list[Expectation], doc: Any) -> list[str]:
    """Every unmet path item, each saying which path held what."""
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
