"""Probes registered at run time through the API, kept in a state file.

The file is JSON, ``{"version": 1, "probes": {NAME: DEFINITION}}``, holding each
definition as it was sent (so later changes to ``defaults:`` apply to it).  It
is replaced atomically: written to a temporary file in the same directory,
fsynced, renamed over the old one, and the directory fsynced, so a crash at any
moment leaves the old file or the new one, never a mix.  Writers are serialized
by one lock; the file is the truth and memory follows it only after a write
succeeded.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.registry import get_kind
from probes.secret_files import regular_file_problem

from ..config import ApiSettings, Config, Defaults, Located, ProbeSpec, parse_probe
from ..limits import bad_text, data_problems
from ..options import Problems
from ..sharding import Shard

log = logging.getLogger("probewatch.status")

FORMAT_VERSION = 1
TEMP_PREFIX = ".probewatch-state-"
DEFAULT_STATE_FILE = "registered-probes.json"


class StoreError(Exception):
    """The state file cannot be read or written; the message names it and why."""


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def encode(definitions: dict[str, Any]) -> bytes:
    doc = {"version": FORMAT_VERSION, "probes": dict(sorted(definitions.items()))}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def read_state_file(path: str) -> dict[str, Any]:
    """The definitions in ``path`` ({} when it does not exist); StoreError if unusable."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("probes"), dict):
        raise StoreError(f"{path}: must be an object with a \"probes\" object")
    if doc.get("version") != FORMAT_VERSION:
        raise StoreError(f"{path}: version {doc.get('version')!r} is not {FORMAT_VERSION}")
    return dict(doc["probes"])


def salvage_state_file(path: str) -> dict[str, Any]:
    """The definitions that still parse in a state file that does not parse whole.

    A file cut short or damaged after some entries still gives those entries:
    the ``"probes"`` object is read entry by entry until the first that fails.
    """
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    start = text.find('"probes"')
    pos = text.find("{", start + len('"probes"')) + 1 if start >= 0 else 0
    if pos <= 0:
        return {}
    ws = " \t\r\n,"
    try:
        while True:
            while pos < len(text) and text[pos] in ws:
                pos += 1
            if pos >= len(text) or text[pos] != '"':
                return found
            name, pos = decoder.raw_decode(text, pos)
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if not text.startswith(":", pos):
                return found
            pos += 1
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            value, pos = decoder.raw_decode(text, pos)
            if isinstance(name, str):
                found[name] = value
    except (ValueError, RecursionError):
        return found


def remove_stale_temps(path: str) -> None:
    """Delete temporary files left by a writer that died before renaming."""
    directory = os.path.dirname(os.path.abspath(path))
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def state_file_path(config_path: str, api: ApiSettings, shard: Shard | None = None) -> str:
    """api.state_file, relative to the config file's directory; by default beside it.

    Under ``--shard=i/N`` (N > 1) the default name carries the shard, so shards
    started from one config file never write over each other's registrations.
    """
    base = os.path.dirname(os.path.abspath(config_path))
    default = DEFAULT_STATE_FILE
    if shard is not None and shard.count > 1:
        default = f"registered-probes.shard-{shard.index}-of-{shard.count}.json"
    return os.path.join(base, api.state_file or default)


def api_problems(config: Config) -> tuple[list[Located], list[str]]:
    """What ``probewatch check`` finds about registration: (problems, warnings).

    The token file must be readable and not empty; the state file, if present,
    must load, and its folder must be writable.  Without token_file or
    state_file nobody asked for registration, so a state file that could not be
    written is only a warning (Megaphone's loopback writes would answer 500).
    """
    api, problems, warnings = config.api, [], []
    try:
        with open(config.path, encoding="utf-8") as fh:
            text = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        text = []

    def problem(key: str, message: str) -> None:
        line = next((i for i, t in enumerate(text, 1) if re.search(rf"\b{key}\s*:", t)), 0)
        problems.append(Located(config.path, line, "api", key, message))

    if api.token_file:
        try:
            with open(api.token_file, encoding="utf-8") as fh:
                if not fh.read().strip():
                    problem("token_file", f"{api.token_file!r} is empty")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problem("token_file", f"cannot read {api.token_file!r}: {why or exc}")
    path = state_file_path(config.path, api)
    why = ""
    try:
        read_state_file(path)
    except StoreError as exc:
        why = str(exc)
    folder = os.path.dirname(path)
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # write_atomic creates missing folders
    if not why and not os.path.isdir(folder):
        why = f"{path}: {folder!r} is not a folder, so registrations cannot be kept"
    elif not why and not os.access(folder, os.W_OK | os.X_OK):
        why = f"{path}: folder {folder!r} is not writable, so registrations cannot be kept"
    if why:
        if api.token_file or api.state_file:
            problem("state_file", why)
        else:
            warnings.append(f"{config.path}: api.state_file: {why}")
    return problems, warnings


def command_refused(kind: Any, api: ApiSettings) -> bool:
    return kind == "command" and not api.allow_command


def resolve(name: str, raw: Any, defaults: Defaults, api: ApiSettings, base: str = "") -> tuple[
        ProbeSpec | None, list[Located]]:
    """Check one API definition exactly as the config file's probes are checked.

    ``base`` is the config file's folder: relative paths are taken from there too.
    """
    if not isinstance(raw, dict):
        return None, [Located("", 0, "", "", "the probe definition must be a JSON object")]
    bounds = data_problems(raw)
    if bounds:
        return None, [Located("", 0, "", key, message) for key, message in bounds]
    raw = copy.deepcopy(raw)  # file options are rewritten below; the stored copy stays as sent
    given = raw.setdefault("name", name)
    if given != name:
        message = f"{given!r} differs from the name in the URL ({name!r})"
        return None, [Located("", 0, "", "name", message)]
    if command_refused(raw.get("kind"), api):
        return None, [Located("", 0, "", "kind",
                              "command probes can be registered only with api.allow_command: true")]
    refused = file_option_problems(raw, api)
    if refused:
        return None, [Located("", 0, "", key, message) for key, message in refused]
    problems = Problems()
    spec = parse_probe(raw, defaults, problems, source="api", base=base)
    if spec is not None and spec.active:
        refusal = get_kind(spec.kind).preflight(spec)
        if refusal:
            problems.add(0, spec.kind, str(refusal))
            spec = None
    return spec, [Located("", 0, "", p.key, p.message) for p in problems]


def file_option_problems(raw: dict[str, Any], api: ApiSettings) -> list[tuple[str, str]]:
    """API probes name files (``*_file`` options) only inside ``api.credentials_dir``.

    Checked before the definition's options are, so no check opens a file
    outside the directory: each must resolve (symlinks followed) to a regular
    file inside it, of at most 64 KiB.  Relative paths are taken inside the
    directory, and rewritten in ``raw`` to the resolved path.
    """
    out: list[tuple[str, str]] = []
    base = os.path.realpath(api.credentials_dir) if api.credentials_dir else ""
    stack: list[tuple[str, Any]] = [("", raw)]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{prefix}[{i}]", v) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in list(node.items()):
            where = f"{prefix}.{key}" if prefix else str(key)
            if not (isinstance(key, str) and key.endswith("_file")):
                stack.append((where, value))
                continue
            if not isinstance(value, str) or not value:
                continue
            if not base:
                out.append((where, "probes registered through the API may not read files; set "
                                   "api.credentials_dir in the config file to allow one directory"))
                continue
            if "\0" in value:
                out.append((where, "is not a file name"))
                continue
            path = os.path.realpath(os.path.join(base, value))
            if os.path.commonpath([base, path]) != base:
                out.append((where, f"{value!r} is outside api.credentials_dir"))
            elif why := regular_file_problem(path):
                out.append((where, why.replace(repr(path), repr(value))))
            else:
                node[key] = path
    return out


@dataclass(frozen=True)
class Settings:
    """What registered definitions are resolved against; a change re-resolves them."""

    defaults: Defaults
    api: ApiSettings
    base: str = ""  # the config file's folder


class RegisteredProbes:
    """The store: definitions from the state file, resolved into ProbeSpecs on demand."""

    def __init__(self, path: str, settings: Callable[[], Settings]) -> None:
        self.path = path
        self._settings = settings
        self._lock = threading.Lock()
        self._raw: dict[str, Any] = {}
        self._specs: dict[str, ProbeSpec] = {}
        self._resolved_for: Settings | None = None
        self.broken = ""  # why the file could not be loaded; writes are refused while set

    def load(self) -> None:
        """Read the state file; a broken one is kept untouched and disables writes.

        What still parses of a broken file runs (see ``salvage_state_file``),
        so a damaged file never stops the exporter from starting; the file
        itself is left as it is for repair and never overwritten.
        """
        with self._lock:
            remove_stale_temps(self.path)
            try:
                self._raw = read_state_file(self.path)
            except StoreError as exc:
                self.broken = str(exc)
                self._raw = salvage_state_file(self.path)
                self._resolved_for = None
                log.error("state file cannot be loaded whole; registration is off until the "
                          "file is fixed or removed (it is kept untouched)",
                          extra={"problem": self.broken, "salvaged": len(self._raw)})
                return
            self.broken = ""
            self._resolved_for = None
            log.info("registered probes loaded",
                     extra={"file": self.path, "probes": len(self._raw)})

    def specs(self) -> list[ProbeSpec]:
        """Resolved specs of every stored definition that is valid under the current config."""
        settings = self._settings()
        with self._lock:
            if settings != self._resolved_for:
                self._specs = {}
                for name, raw in sorted(self._raw.items()):
                    try:
                        spec, problems = resolve(name, raw, settings.defaults, settings.api,
                                                 settings.base)
                    except Exception as exc:  # one bad entry must not stop the rest
                        spec, problems = None, [Located("", 0, "", "", f"cannot be read: {exc!r}")]
                    if spec is None:
                        name = ascii(name) if bad_text(name) else name
                        log.error("registered probe not run: its definition is no longer valid",
                                  extra={"probe": name, "problems": "; ".join(map(str, problems))})
                    else:
                        self._specs[name] = spec
                self._resolved_for = settings
            return list(self._specs.values())

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._raw)

    def definition(self, name: str) -> Any:
        with self._lock:
            return self._raw.get(name)

    def put(self, spec: ProbeSpec, raw: dict[str, Any]) -> bool:
        """Store a checked definition; True if it is new.  StoreError if it cannot be written."""
        with self._lock:
            created = spec.name not in self._raw
            self._write({**self._raw, spec.name: raw})
            self._specs[spec.name] = spec
            return created

    def delete(self, name: str) -> bool:
        """Remove a definition; False if there was none.  StoreError if it cannot be written."""
        with self._lock:
            if name not in self._raw:
                return False
            self._write({k: v for k, v in self._raw.items() if k != name})
            self._specs.pop(name, None)
            return True

    def _write(self, definitions: dict[str, Any]) -> None:
        if self.broken:
            raise StoreError(f"registration is off: {self.broken}; "
                             "fix or remove the file and restart")
        try:
            write_atomic(self.path, encode(definitions))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot be written: {exc.strerror or exc}") from None
        self._raw = definitions
