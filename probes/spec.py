"""The spec every kind receives: one probe, resolved (defaults applied, options typed).

exporter.config builds it from the file or a status API body; a kind reads the
shared fields (target, timeout ...) and its own ``options`` (an instance of its
``Options`` dataclass, hence the type parameter: ``ProbeSpec[TcpOptions]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .durations import format_duration
from .redact import mask_text, mask_value

O = TypeVar("O")  # noqa: E741 - the kind's Options dataclass


@dataclass(frozen=True)
class ProbeSpec(Generic[O]):
    """One probe, resolved: defaults applied, options typed and checked."""

    name: str
    kind: str
    target: str
    period: float
    timeout: float
    active: bool
    labels: tuple[tuple[str, str], ...]
    failures: int
    options: O
    source: str = "config"  # "config" or "api"
    histogram: bool = False

    @classmethod
    def plain(cls, *, name: str, kind: str, target: str, period: float, timeout: float, active: bool,
              labels: tuple[tuple[str, str], ...], failures: int, options: Any, source: str,
              histogram: bool) -> ProbeSpec[Any]:
        """``ProbeSpec(...)`` of these fields, made without the frozen dataclass's ``__init__``
        (an ``object.__setattr__`` per field: a third of reading a plain probe of a
        100,000-probe config).  The same object an unpickled spec is: ProbeSpec has no
        ``__post_init__`` (tests/probes/test_spec.py holds it to that)."""
        spec = object.__new__(cls)
        spec.__dict__.update(name=name, kind=kind, target=target, period=period, timeout=timeout,
                             active=active, labels=labels, failures=failures, options=options,
                             source=source, histogram=histogram)
        return spec

    def definition(self, masked: bool = True) -> dict[str, Any]:
        """The resolved definition as plain data: secrets masked for showing
        (probes.redact), whole for change detection."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "period": format_duration(self.period),
            "timeout": format_duration(self.timeout),
            "active": self.active,
            "labels": dict(self.labels),
            "failures": self.failures,
            **({"histogram": True} if self.histogram else {}),
            self.kind: options_as_dict(self.options),
        }
        return mask_value(out) if masked else out

    @property
    def shown_target(self) -> str:
        """The target with any password or token in it masked."""
        return mask_text(self.target)

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.definition(masked=False), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def same_definition(self, other: ProbeSpec[Any]) -> bool:
        """Whether ``other`` defines the same probe (``fingerprint`` equal; ``source`` aside).

        Equal fields make equal definitions (options compare by their init fields,
        the ones ``definition`` shows), so they answer at once: a reload of 100,000
        unchanged probes compares tuples, not 200,000 JSON dumps and hashes.  Only
        fields that differ are judged by the fingerprint, which may still find
        them the same (a period of 10.0 and 10.0000001 both show as 10s).
        """
        if self is other:
            return True
        if (self.name, self.kind, self.target, self.period, self.timeout, self.active, self.labels,
                self.failures, self.histogram, self.options) == (
                other.name, other.kind, other.target, other.period, other.timeout, other.active,
                other.labels, other.failures, other.histogram, other.options):
            return True
        return self.fingerprint == other.fingerprint


def options_as_dict(obj: Any) -> Any:
    """An options dataclass as plain data, keyed as the config writes it."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.metadata.get("key", f.name): options_as_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.init
        }
    if isinstance(obj, list):
        return [options_as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: options_as_dict(v) for k, v in obj.items()}
    return obj
