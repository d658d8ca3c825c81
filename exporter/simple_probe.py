"""The fast way to read a plain probe: only shared fields, no options block.

Most of a large config is such probes (name, kind, target, maybe period or
timeout).  ``simple_probe`` builds their spec without the general path's
introspection, and decides nothing on its own: a probe it does not take, or
would find a problem in, goes the general way (``config.parse_probe``), which
says what is wrong and where.

What every plain probe of one config has alike is built once per load
(``SimpleMemo``): the kind's default options, the default labels.  A spec's
options are read-only once loaded, so sharing them changes nothing but memory
and how much a worker receives (one pickled options object, not 50,000).
"""

from __future__ import annotations

from typing import Any

from probes.registry import KindUnavailable, get_kind
from probes.spec import ProbeSpec

from . import limits
from .durations import parse_duration
from .options import build
from .probe_fields import DEFAULT_TIMEOUT, LISTEN, NAME_RE, Defaults, range_problems
from .problems import Problems
from .yamlsource import LineDict

# The keys a plain probe may hold, with the type each must have there.
SIMPLE_KEYS = {"name": str, "kind": str, "target": str, "period": str, "timeout": str,
               "active": bool, "failures": int, "histogram": bool}
_BAD = object()  # a kind whose default options do not build: the general path says why


class SimpleMemo:
    """What the plain probes of one load share: default options per kind, the default labels."""

    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self.labels = defaults.sorted_labels()
        self.options: dict[str, Any] = {}

    def default_options(self, kind_name: str, kind_cls: Any, line: int) -> Any:
        options = self.options.get(kind_name)
        if options is None:
            scratch = Problems()
            options = build(kind_cls.Options, {}, scratch, prefix=f"{kind_name}.", line=line)
            if options is None or scratch:
                options = _BAD
            self.options[kind_name] = options
        return None if options is _BAD else options


def simple_probe(raw: LineDict, memo: SimpleMemo, source: str) -> ProbeSpec | None:
    """The spec of a probe with only plain shared fields, when it is certainly valid; else None."""
    for key, value in raw.items():
        if SIMPLE_KEYS.get(key) is not type(value):
            return None
    defaults = memo.defaults
    name, kind_name, target = raw.get("name"), raw.get("kind"), raw.get("target")
    # ASCII texts this short, booleans and the integers the ranges take are within every
    # bound limits.data_problems sets (period and timeout: parse_duration reads ASCII only).
    if (not name or not kind_name or len(name) > limits.MAX_NAME or not name.isascii()
            or not NAME_RE.match(name) or (target is not None and not target.isascii())):
        return None
    try:
        kind_cls = get_kind(kind_name)
        period = parse_duration(raw["period"]) if "period" in raw else defaults.period
        timeout_set = parse_duration(raw["timeout"]) if "timeout" in raw else defaults.timeout
    except (KeyError, KindUnavailable, ValueError):
        return None
    failures = raw.get("failures", defaults.failures)
    timeout = timeout_set if timeout_set is not None else min(DEFAULT_TIMEOUT, round(period * 0.8, 3))
    target = (target or kind_cls.default_target or "").replace("${listen}", LISTEN["address"])
    if (not target or len(target) > limits.MAX_TARGET or timeout >= period
            or range_problems(period, timeout, failures)):
        return None
    options = memo.default_options(kind_name, kind_cls, raw.line)
    if options is None:
        return None
    spec = ProbeSpec.plain(
        name=name,
        kind=kind_name,
        target=target,
        period=period,
        timeout=timeout,
        active=raw.get("active", True),
        labels=memo.labels,
        failures=failures,
        options=options,
        source=source,
        histogram=bool(raw.get("histogram", defaults.histogram)),
    )
    return None if kind_cls.validate(spec) else spec
