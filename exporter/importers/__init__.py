"""``probewatch import TOOL ...``: the replaced tools' configs as probewatch configs.

One module per tool (moniteur, cmdchk, megaphone); each returns a Translation:
the probewatch config as plain data, the notes of what it could not translate
(printed on standard error), the ``probewatch serve`` flags the tool's settings
became, and other files to write (Moniteur's notifier.cfg becomes an
Alertmanager config and a password file).  Unreadable input raises ImportFailed
with the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class ImportFailed(Exception):
    """The input cannot be read; the message starts with FILE:LINE where known."""


@dataclass
class Translation:
    tool: str
    sources: list[str]
    probes: list[dict[str, Any]] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was not translated, and why
    flags: list[str] = field(default_factory=list)  # for probewatch serve
    comments: list[str] = field(default_factory=list)  # the config file's header
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (text, mode)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.defaults:
            out["defaults"] = self.defaults
        out["probes"] = self.probes
        return out


def probe_name(text: str, taken: set[str]) -> str:
    """A probe name (letters, digits, _ . -) from ``text``, unique among ``taken``."""
    base = NAME_BAD.sub("-", text).strip("-.")[:60] or "probe"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def render(t: Translation) -> str:
    """The probewatch config file: a header saying where it came from, then YAML."""
    head = [f"# Translated by `probewatch import {t.tool}` from {', '.join(t.sources)}."]
    head += [f"# {line}" if line else "#" for line in t.comments]
    if t.flags:
        head.append("# Run it with: probewatch serve --config.file=THIS_FILE " + " ".join(t.flags))
    for note in t.notes:
        head.append(f"# Note: {note}")
    body = yaml.safe_dump(t.config(), sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(head) + "\n" + body
