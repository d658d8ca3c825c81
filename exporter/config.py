"""The probe config: shared fields on ProbeSpec (probes/spec.py), kind options on the kind's dataclass.

``load_config(path)`` returns a Config or raises ConfigError carrying every
problem found, each rendered as ``FILE:LINE: probes[i] (name): key: what``.
The same ``parse_probe`` serves the file and the status API, so both give the
same messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import gc
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from probes.registry import KindUnavailable, get_kind, kind_names
from probes.spec import ProbeSpec

from . import limits
from .durations import format_duration
from .options import build, did_you_mean, hint, option_shape
from .probe_fields import (
    DEFAULT_TIMEOUT,
    LABEL_RE,
    LISTEN,
    NAME_RE,
    RESERVED_LABELS,
    SHARED_KEYS,
    Defaults,
    Shared,
    label_problems,
    range_problems,
)
from .problems import ConfigError, ConfigProblem, Problems
from .simple_probe import SimpleMemo, simple_probe
from .yamlsource import LineDict, LineList, YamlError, load_yaml

# Where they were defined before probe_fields.py; other modules import them from here.
__all__ = ["DEFAULT_TIMEOUT", "LABEL_RE", "LISTEN", "NAME_RE", "RESERVED_LABELS", "SHARED_KEYS",
           "ApiSettings", "Config", "ConfigError", "Defaults", "ExternalUrls", "ProbeSpec",
           "Shared", "WebSettings", "config_dir", "decode_config", "load_config", "parse_config",
           "parse_probe", "read_config_bytes"]

@dataclass
class ApiSettings:
    """Runtime registration through the status API (off unless token_file is set)."""

    token_file: str = ""
    state_file: str = ""
    allow_command: bool = False
    # Megaphone's PUT /check/add and DELETE /check/ID: "loopback" takes them from
    # this host without a token (and with the token from anywhere), "token" only
    # with the token, "read-only" refuses them.  See docs/status-api.md.
    megaphone: Literal["loopback", "token", "read-only"] = "loopback"
    # The one directory API-registered probes may name files (*_file options) in;
    # relative to the config file's directory.  Empty: no files for API probes.
    credentials_dir: str = ""


# Placeholders web.external_urls.grafana may use; each is URL-encoded when filled in.
URL_PLACEHOLDERS = ("probe", "group", "kind", "target")


@dataclass
class ExternalUrls:
    """Links from the status page's cards (web.external_urls); empty means no link.

    ``grafana`` is a URL template ({probe}, {group}, {kind}, {target});
    ``prometheus`` is the Prometheus base URL the page adds /graph?... to.
    """

    grafana: str = ""
    prometheus: str = ""

    def check(self) -> list[tuple[str, str]]:
        import string

        out = []
        for key in ("grafana", "prometheus"):
            url = getattr(self, key)
            if url and not url.startswith(("http://", "https://")):
                out.append((key, f"{url!r} must start with http:// or https://"))
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(self.grafana) if f is not None]
        except ValueError as exc:
            return [*out, ("grafana", f"is not a valid template: {exc}")]
        for name in names:
            if name not in URL_PLACEHOLDERS:
                out.append(("grafana", f"unknown placeholder {{{name}}} "
                                       f"(known: {', '.join('{' + p + '}' for p in URL_PLACEHOLDERS)})"))
        if "{" in self.prometheus or "}" in self.prometheus:
            out.append(("prometheus", "is a base URL, without placeholders"))
        return out


@dataclass
class WebSettings:
    """The status page's settings (the web: block of the config file)."""

    external_urls: ExternalUrls = field(default_factory=ExternalUrls)


@dataclass
class Config:
    path: str
    defaults: Defaults
    probes: list[ProbeSpec]
    api: ApiSettings = field(default_factory=ApiSettings)
    web: WebSettings = field(default_factory=WebSettings)

    def by_name(self) -> dict[str, ProbeSpec]:
        return {p.name: p for p in self.probes}


def parse_probe(
    raw: Any,
    defaults: Defaults,
    problems: Problems,
    source: str = "config",
    line: int = 0,
    base: str = "",
    memo: SimpleMemo | None = None,
) -> ProbeSpec | None:
    """Check and resolve one probe definition; add to ``problems`` and return None if bad.

    ``base`` is the config file's folder: relative paths in the kind's options
    are taken from there (see ``resolve_paths``).  ``memo`` is what the plain
    probes of one load share (``simple_probe``), made from ``defaults``.
    """
    if type(raw) is LineDict and (spec := simple_probe(raw, memo or SimpleMemo(defaults), source)) is not None:
        return spec
    before = len(problems)
    if not isinstance(raw, dict):
        problems.add(line, "", "must be a mapping with name, kind, target and options")
        return None
    lines = raw if isinstance(raw, LineDict) else None

    def at(key: str) -> int:
        return lines.line_of(key) if lines is not None else line

    # Out-of-bounds data (lone surrogates, NaN, huge or deep values) is refused
    # before any option is typed or checked, so no check sees it.
    bounds = limits.data_problems(raw)
    problems.add_pairs(bounds, lambda key: at(key.split(".")[0].split("[")[0]))
    if bounds:
        return None

    name: Any = raw.get("name")
    if isinstance(name, bool):  # `name: off` or `name: yes`: YAML 1.1 took the word for a boolean
        spellings = "on, yes or true" if name else "off, no or false"
        problems.add(at("name"), "name", f"was read as the boolean {str(name).lower()}, not as text (unquoted, "
                                         f"YAML takes {spellings} for {str(name).lower()}); quote it")
    elif isinstance(name, (int, float, datetime.date)):  # `name: 2024`, `name: 1.5`, `name: 2024-01-31`
        kind = "date" if isinstance(name, datetime.date) else "number"
        problems.add(at("name"), "name", f"was read as the {kind} {name}, not as text; quote it ('{name}')")
    elif isinstance(name, (list, dict)):
        shape = "list" if isinstance(name, list) else "mapping"
        problems.add(at("name"), "name", f"must be text (letters, digits, _ . -), not a {shape}")
    elif not isinstance(name, str) or not name:
        problems.add(at("name"), "name", "is required (letters, digits, _ . -)")
    elif not NAME_RE.match(name):
        problems.add(at("name"), "name", f"{name!r} may hold only letters, digits, _ . and -")
    elif len(name) > limits.MAX_NAME:
        problems.add(at("name"), "name", f"is {len(name)} characters long; at most {limits.MAX_NAME} are taken")

    kind_name: Any = raw.get("kind")
    kind_cls = None
    known = kind_names()
    if not isinstance(kind_name, str) or not kind_name:
        problems.add(at("kind"), "kind", f"is required (one of: {', '.join(known)})")
    elif kind_name not in known:
        problems.add(at("kind"), "kind",
                     f"unknown kind {kind_name!r}{hint(kind_name, kind_names())} (known: {', '.join(kind_names())})")
    else:
        try:
            kind_cls = get_kind(kind_name)
        except KindUnavailable as exc:
            problems.add(at("kind"), "kind", str(exc))

    for key in raw:
        if key not in SHARED_KEYS and key != kind_name:
            own = [f.metadata.get("key", f.name) for f in dataclasses.fields(kind_cls.Options)] if kind_cls else []
            if guess := did_you_mean(key, own):
                problems.add(at(key), key, f"unknown key; did you mean {kind_name}.{guess}? "
                                           "(kind options go in a block named after the kind)")
            else:
                guess_shared = hint(key, SHARED_KEYS)
                suffix = " (kind options go in a block named after the kind)" if kind_cls and not guess_shared else ""
                problems.add(at(key), key, f"unknown key{guess_shared}{suffix}")

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
            shared.target = (kind_cls.default_target if kind_cls else None) or ""
        shared.target = shared.target.replace("${listen}", LISTEN["address"])
        if not shared.target:
            problems.add(at("target"), "target", "is required")
        elif len(shared.target) > limits.MAX_TARGET:
            problems.add(at("target"), "target", f"is {len(shared.target)} characters long; "
                                                 f"at most {limits.MAX_TARGET} are taken")
        ranges = range_problems(period, timeout, failures)
        problems.add_pairs(ranges, lambda key: at(key) if key in raw else at("period"))
        if not any(k in ("period", "timeout") for k, _ in ranges) and timeout >= period:
            problems.add(
                at("timeout") if "timeout" in raw else at("period"),
                "timeout",
                f"must be shorter than period ({format_duration(period)})",
            )
        problems.add_pairs(label_problems(shared.labels), lambda _: at("labels"))

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
            block = resolve_paths(kind_cls.Options, block, base)
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
    problems.add_pairs(kind_cls.validate(spec), lambda key: at(key.split(".")[0]))
    return None if len(problems) > before else spec


# Option keys holding a path besides every ``*_file`` key (ca_file, key_file,
# password_file, bearer_token_file, ...).
PATH_KEYS = frozenset({"cwd"})


def config_dir(path: str) -> str:
    """The folder relative paths in the config file ``path`` are taken from."""
    return os.path.dirname(os.path.abspath(path))


def resolve_paths(cls: Any, raw: Any, base: str) -> Any:
    """``raw`` with every relative path option of ``cls`` joined to ``base``.

    The one place where paths in a config are made absolute, as Prometheus
    does: relative to the config file's folder, not the working directory.
    Path options are found by name (``*_file``, ``cwd``) in the kind's Options
    dataclass and the dataclasses nested in it; other values are untouched.
    """
    if not base or not raw or not isinstance(raw, dict):
        return raw
    shape = option_shape(cls)
    if shape is None:
        return raw
    hints, aliases = shape
    out = LineDict(raw)
    out.line = getattr(raw, "line", 0)
    out.key_lines = getattr(raw, "key_lines", {})
    for key, value in raw.items():
        name = aliases.get(key)
        if name is None:
            continue
        if isinstance(value, str) and value and (key.endswith("_file") or key in PATH_KEYS):
            out[key] = os.path.join(base, os.path.expanduser(value))
        elif isinstance(value, dict):
            out[key] = resolve_paths(hints[name], value, base)
    return out


S = TypeVar("S")


def _section(data: LineDict, key: str, cls: type[S], path: str, located: list[ConfigProblem]) -> S:
    """Decode one top-level block (defaults:, api:); its defaults when absent or bad."""
    problems = Problems()
    raw = data.get(key)
    result = None
    bounds = limits.data_problems(raw)
    for bad_key, message in bounds:
        problems.add(data.line_of(key), bad_key, message)
    if raw is None or bounds:
        pass
    elif isinstance(raw, dict):
        result = build(cls, raw, problems, line=data.line_of(key))
    else:
        problems.add(data.line_of(key), "", "must be a mapping")
    located += problems.located(path, key)
    return result if result is not None else cls()


def parse_config(text: str, path: str, check_env: bool = True) -> Config:
    """Parse config text; raise ConfigError with every problem found."""
    # A large config builds hundreds of thousands of objects and no cycles: the cyclic
    # collector would walk them over and over for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_config(text, path, check_env)
    finally:
        if enabled:
            gc.enable()


def _parse_config(text: str, path: str, check_env: bool) -> Config:
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise exc.located(path) from None
    if data is None:
        data = LineDict()
        data.line, data.key_lines = 1, {}
    if not isinstance(data, LineDict):
        raise ConfigError([ConfigProblem(path, 1, "", "", "the file must be a mapping with defaults: and probes:")])
    located: list[ConfigProblem] = []
    for key in data:
        if key not in ("defaults", "probes", "api", "web"):
            located.append(ConfigProblem(path, data.line_of(key), "", key,
                                   f"unknown key{hint(key, ('api', 'defaults', 'probes', 'web'))}"
                                   " (known keys: api, defaults, probes, web)"))
    defaults = _section(data, "defaults", Defaults, path, located)
    api = _section(data, "api", ApiSettings, path, located)
    web = _section(data, "web", WebSettings, path, located)
    base = config_dir(path)
    for key in ("token_file", "state_file"):
        if getattr(api, key):
            setattr(api, key, os.path.join(base, os.path.expanduser(getattr(api, key))))
    if api.credentials_dir:
        api.credentials_dir = os.path.join(base, os.path.expanduser(api.credentials_dir))

    raw_probes = data.get("probes")
    specs: list[ProbeSpec] = []
    if raw_probes is None:
        raw_probes = LineList()
        raw_probes.line, raw_probes.item_lines = 1, []
    if not isinstance(raw_probes, list):
        located.append(ConfigProblem(path, data.line_of("probes"), "", "probes", "must be a list of probes"))
        raw_probes = []
    seen: dict[str, int] = {}
    memo = SimpleMemo(defaults)
    lines = raw_probes if isinstance(raw_probes, LineList) else None
    for i, raw in enumerate(raw_probes):
        line = lines.line_of(i) if lines is not None else 0
        name = raw.get("name") if isinstance(raw, dict) else None
        problems = Problems()
        spec = parse_probe(raw, defaults, problems, line=line, base=base, memo=memo)
        if isinstance(name, str) and name:
            first = seen.setdefault(name, i)
            if first != i:
                located.append(ConfigProblem(path, line, _where(i, name), "name",
                                             f"duplicate name {name!r} (first used by probes[{first}])"))
        if spec is not None and check_env:
            message = get_kind(spec.kind).preflight(spec) if spec.active else None
            if message:
                problems.add(line, spec.kind, message)
                spec = None
        if problems:
            located += problems.located(path, _where(i, name))
        if spec is not None:
            specs.append(spec)
    if located:
        raise ConfigError(located)
    return Config(path=path, defaults=defaults, probes=specs, api=api, web=web)


def _where(index: int, name: Any) -> str:
    """How a problem names probe ``index``: ``probes[3] (web)``."""
    return f"probes[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")


MAX_CONFIG_BYTES = 64 << 20


def read_config_bytes(path: str) -> bytes:
    """The config file's bytes; OSError unless it is a regular file of at most 64 MiB.

    Opened without blocking, so a FIFO or a device put in the file's place
    is refused at once instead of hanging a reload or eating memory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise OSError(errno.EFBIG, f"is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise OSError(errno.EFBIG, f"is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        return data
    finally:
        os.close(fd)


def decode_config(data: bytes, path: str, check_env: bool = True) -> Config:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, 0, "", "", f"is not UTF-8 text: {exc.reason}")]) from None
    return parse_config(text, path, check_env=check_env)


def load_config(path: str, check_env: bool = True) -> Config:
    try:
        data = read_config_bytes(path)
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, 0, "", "", f"cannot be read: {exc.strerror or exc}")]) from None
    return decode_config(data, path, check_env=check_env)
