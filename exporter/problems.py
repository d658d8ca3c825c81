"""The one shape of a config problem, wherever it is found.

A config file, a status API body, the web config and the YAML parser all
report ``ConfigProblem(file, line, where, key, message)``, rendered by one
``__str__`` as ``FILE:LINE: WHERE: KEY: MESSAGE`` (parts left out when empty;
secrets in the message masked).  ``ConfigError`` carries a list of them.
The kinds' ``check()`` and ``validate()`` keep returning ``(key, message)``
pairs, their simple contract; ``Problems.add_pairs`` turns those into problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from probes.redact import mask_text


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config, and where it is (empty or 0 when unknown)."""

    file: str = ""
    line: int = 0
    where: str = ""  # the probe (``probes[3] (web)``) or the top-level block (``api``)
    key: str = ""
    message: str = ""

    def __str__(self) -> str:
        head = (f"{self.file}:{self.line}: " if self.line else f"{self.file}: ") if self.file else ""
        parts = [p for p in (self.where, self.key) if p]
        return head + "".join(p + ": " for p in parts) + mask_text(self.message)

    def located(self, file: str, where: str = "") -> ConfigProblem:
        """This problem, in ``file`` (and ``where``) when it does not say yet."""
        return dataclasses.replace(self, file=self.file or file, where=self.where or where)


class Problems(list[ConfigProblem]):
    """Problems collected while decoding, each with its line and key."""

    def add(self, line: int, key: str, message: str) -> None:
        self.append(ConfigProblem(line=line, key=key, message=message))

    def add_pairs(self, pairs: Iterable[tuple[str, str]], line_of: Callable[[str], int],
                  prefix: str = "") -> None:
        """``(key, message)`` pairs from a ``check()`` or ``validate()``; ``line_of(key)`` places each."""
        for key, message in pairs:
            self.add(line_of(key), (prefix + key).rstrip("."), message)  # key "": the block itself

    def located(self, file: str, where: str = "") -> list[ConfigProblem]:
        return [p.located(file, where) for p in self]


class ConfigError(Exception):
    """Every problem found in one config, one per line of the message."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    def located(self, file: str) -> ConfigError:
        """The same problems, in ``file``."""
        return ConfigError([p.located(file) for p in self.problems])
