"""Expectation checks shared by every kind that reads a reply.

Text: ``expect: "+OK POP3"`` is literal text the reply must contain;
``expect: {regex: "^220 .*ESMTP"}`` is a regular expression searched in the
reply.  Both are compiled once, at config load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RegexText:
    """``{regex: PATTERN}``: a regular expression the reply must match somewhere."""

    regex: str
    compiled: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def check(self) -> list[tuple[str, str]]:
        try:
            self.compiled = re.compile(self.regex)
        except re.error as exc:
            return [("regex", f"invalid regular expression {self.regex!r}: {exc}")]
        return []


TextExpectation = str | RegexText


class TextMatcher:
    """Finds an expectation in a growing reply (literal text or regex)."""

    def __init__(self, expect: TextExpectation) -> None:
        if isinstance(expect, RegexText):
            self._regex: re.Pattern[str] | None = expect.compiled or re.compile(expect.regex)
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
