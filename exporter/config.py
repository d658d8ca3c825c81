"""The probe config: shared fields on ProbeSpec, kind options on the kind's dataclass.

``load_config(path)`` returns a Config or raises ConfigError carrying every
problem found, each rendered as ``FILE:LINE: probes[i] (name): key: what``.
The same ``parse_probe`` serves the file and the status API, so both give the
same messages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from probes.registry import KindUnavailable, get_kind, kind_names

from .durations import format_duration
from .options import Duration, Problem, Problems, build
from .yamlsource import LineDict, LineList, YamlError, load_yaml

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Label names probewatch itself puts on series; a probe's labels may not shadow them.
RESERVED_LABELS = frozenset(
    {"probe", "kind", "target", "reason", "message", "field", "stat", "le", "shard", "state"}
)
DEFAULT_TIMEOUT = 10.0
SHARED_KEYS = ("name", "kind", "target", "period", "timeout", "active", "labels", "failures",
               "histogram")


@dataclass
class Defaults:
    """Values every probe takes unless it sets its own."""

    period: Duration = 30.0
    # None: 10s, or 80% of the period when the period is 10s or less.
    timeout: Duration | None = None
    failures: int = 3
    labels: dict[str, str] = field(default_factory=dict)
    histogram: bool = False  # export probewatch_probe_duration_seconds (12 series a probe)

    def check(self) -> list[tuple[str, str]]:
        out = []
        if self.failures < 1:
            out.append(("failures", "must be at least 1"))
        out.extend(_label_problems(self.labels))
        return out


@dataclass
class ApiSettings:
    """Runtime registration through the status API (off unless token_file is set)."""

    token_file: str = ""
    state_file: str = ""
    allow_command: bool = False


@dataclass
class Shared:
    """The shared fields as written; None means "take it from defaults"."""

    target: str = ""
    period: Duration | None = None
    timeout: Duration | None = None
    active: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    failures: int | None = None
    histogram: bool | None = None


@dataclass(frozen=True)
class ProbeSpec:
    """One probe, resolved: defaults applied, options typed and checked."""

    name: str
    kind: str
    target: str
    period: float
    timeout: float
    active: bool
    labels: tuple[tuple[str, str], ...]
    failures: int
    options: Any
    source: str = "config"  # "config" or "api"
    histogram: bool = False

    def definition(self) -> dict[str, Any]:
        """The resolved definition as plain data (for the API and change detection)."""
        return {
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

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.definition(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def options_as_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.metadata.get("key", f.name): options_as_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.init and not f.metadata.get("secret")
        }
    if isinstance(obj, list):
        return [options_as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: options_as_dict(v) for k, v in obj.items()}
    return obj


@dataclass
class Config:
    path: str
    defaults: Defaults
    probes: list[ProbeSpec]
    api: ApiSettings = field(default_factory=ApiSettings)

    def by_name(self) -> dict[str, ProbeSpec]:
        return {p.name: p for p in self.probes}


@dataclass(frozen=True)
class Located:
    """A problem with the file and probe it belongs to."""

    file: str
    line: int
    where: str
    key: str
    message: str

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}: " if self.file else ""
        parts = [p for p in (self.where, self.key) if p]
        return head + "".join(p + ": " for p in parts) + self.message

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "where": self.where, "key": self.key, "message": self.message}


class ConfigError(Exception):
    def __init__(self, problems: list[Located]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _label_problems(labels: dict[str, str], prefix: str = "labels.") -> list[tuple[str, str]]:
    out = []
    for key in labels:
        if not LABEL_RE.match(key):
            out.append((prefix + key, "is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"))
        elif key in RESERVED_LABELS or key.startswith("__"):
            out.append((prefix + key, "is reserved by probewatch; choose another label name"))
    return out


def parse_probe(
    raw: Any,
    defaults: Defaults,
    problems: Problems,
    source: str = "config",
    line: int = 0,
) -> ProbeSpec | None:
    """Check and resolve one probe definition; add to ``problems`` and return None if bad."""
    before = len(problems)
    if not isinstance(raw, dict):
        problems.add(line, "", "must be a mapping with name, kind, target and options")
        return None
    lines = raw if isinstance(raw, LineDict) else None

    def at(key: str) -> int:
        return lines.line_of(key) if lines is not None else line

    name: Any = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(at("name"), "name", "is required (letters, digits, _ . -)")
    elif not NAME_RE.match(name):
        problems.add(at("name"), "name", f"{name!r} may hold only letters, digits, _ . and -")

    kind_name: Any = raw.get("kind")
    kind_cls = None
    if not isinstance(kind_name, str) or not kind_name:
        problems.add(at("kind"), "kind", f"is required (one of: {', '.join(kind_names())})")
    elif kind_name not in kind_names():
        problems.add(at("kind"), "kind", f"unknown kind {kind_name!r} (known: {', '.join(kind_names())})")
    else:
        try:
            kind_cls = get_kind(kind_name)
        except KindUnavailable as exc:
            problems.add(at("kind"), "kind", str(exc))

    for key in raw:
        if key not in SHARED_KEYS and key != kind_name:
            hint = " (kind options go in a block named after the kind)" if kind_cls else ""
            problems.add(at(key), key, f"unknown key{hint}")

    shared_raw = LineDict({k: raw[k] for k in SHARED_KEYS[2:] if k in raw})
    shared_raw.line = lines.line if lines is not None else line
    shared_raw.key_lines = lines.key_lines if lines is not None else {}
    shared = build(Shared, shared_raw, problems, line=line)
    period = timeout = 0.0
    failures = 0
    if shared is not None:
        period = shared.period if shared.period is not None else defaults.period
        failures = shared.failures if shared.failures is not None else defaults.failures
        timeout_set = shared.timeout if shared.timeout is not None else defaults.timeout
        timeout = timeout_set if timeout_set is not None else min(DEFAULT_TIMEOUT, round(period * 0.8, 3))
        if not shared.target:
            shared.target = getattr(kind_cls, "default_target", "")
        if not shared.target:
            problems.add(at("target"), "target", "is required")
        if timeout >= period:
            problems.add(
                at("timeout") if "timeout" in raw else at("period"),
                "timeout",
                f"must be shorter than period ({format_duration(period)})",
            )
        if failures < 1:
            problems.add(at("failures"), "failures", "must be at least 1")
        for key, message in _label_problems(shared.labels):
            problems.add(at("labels"), key, message)

    options = None
    if kind_cls is not None:
        block = raw.get(kind_name)
        block_line = at(kind_name) if kind_name in raw else (lines.line if lines else line)
        if block is None:
            block = LineDict()
            block.line, block.key_lines = block_line, {}
        if not isinstance(block, dict):
            problems.add(block_line, kind_name, "must be a mapping of the kind's options")
        else:
            options = build(kind_cls.Options, block, problems, prefix=f"{kind_name}.", line=block_line)

    if len(problems) > before or shared is None or kind_cls is None:
        return None
    labels = {**defaults.labels, **shared.labels}
    spec = ProbeSpec(
        name=name,
        kind=kind_name,
        target=shared.target,
        period=period,
        timeout=timeout,
        active=shared.active,
        labels=tuple(sorted(labels.items())),
        failures=failures,
        options=options,
        source=source,
        histogram=bool(shared.histogram if shared.histogram is not None else defaults.histogram),
    )
    validate = getattr(kind_cls, "validate", None)
    if callable(validate):
        for key, message in validate(spec) or ():
            problems.add(at(key.split(".")[0]), key, message)
    return None if len(problems) > before else spec


def _locate(file: str, where: str, found: list[Problem]) -> list[Located]:
    return [Located(file, p.line, where, p.key, p.message) for p in found]


S = TypeVar("S")


def _section(data: LineDict, key: str, cls: type[S], path: str, located: list[Located]) -> S:
    """Decode one top-level block (defaults:, api:); its defaults when absent or bad."""
    problems = Problems()
    raw = data.get(key)
    result = None
    if raw is None:
        pass
    elif isinstance(raw, dict):
        result = build(cls, raw, problems, line=data.line_of(key))
    else:
        problems.add(data.line_of(key), "", "must be a mapping")
    located += _locate(path, key, problems)
    return result if result is not None else cls()


def parse_config(text: str, path: str, check_env: bool = True) -> Config:
    """Parse config text; raise ConfigError with every problem found."""
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise ConfigError([Located(path, exc.line, "", "", exc.message)]) from None
    if data is None:
        data = LineDict()
        data.line, data.key_lines = 1, {}
    if not isinstance(data, LineDict):
        raise ConfigError([Located(path, 1, "", "", "the file must be a mapping with defaults: and probes:")])
    located: list[Located] = []
    for key in data:
        if key not in ("defaults", "probes", "api"):
            located.append(Located(path, data.line_of(key), "", key,
                                   "unknown key (known keys: api, defaults, probes)"))
    defaults = _section(data, "defaults", Defaults, path, located)
    api = _section(data, "api", ApiSettings, path, located)

    raw_probes = data.get("probes")
    specs: list[ProbeSpec] = []
    if raw_probes is None:
        raw_probes = LineList()
        raw_probes.line, raw_probes.item_lines = 1, []
    if not isinstance(raw_probes, list):
        located.append(Located(path, data.line_of("probes"), "", "probes", "must be a list of probes"))
        raw_probes = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_probes):
        line = raw_probes.line_of(i) if isinstance(raw_probes, LineList) else 0
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"probes[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
        problems = Problems()
        spec = parse_probe(raw, defaults, problems, line=line)
        if isinstance(name, str) and name:
            if name in seen:
                located.append(
                    Located(path, line, where, "name", f"duplicate name {name!r} (first used by probes[{seen[name]}])")
                )
            else:
                seen[name] = i
        if spec is not None and check_env:
            preflight = getattr(get_kind(spec.kind), "preflight", None)
            message = preflight(spec) if callable(preflight) and spec.active else None
            if message:
                problems.add(line, spec.kind, message)
                spec = None
        located += _locate(path, where, problems)
        if spec is not None:
            specs.append(spec)
    if located:
        raise ConfigError(located)
    return Config(path=path, defaults=defaults, probes=specs, api=api)


def load_config(path: str, check_env: bool = True) -> Config:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([Located(path, 0, "", "", f"cannot be read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Located(path, 0, "", "", f"is not UTF-8 text: {exc.reason}")]) from None
    return parse_config(text, path, check_env=check_env)
