"""Cmdchk's JSON config files as one probewatch config.

The files are read in order and later settings override earlier ones, as
Cmdchk did (a later ``check_list`` replaces an earlier one whole).  Each
``check_list`` entry, ``{"command line": [accepted codes]}``, becomes a command
probe run through the shell, as Cmdchk ran it (an empty list still means
``[0]``).  ``port`` and ``log_location`` become ``probewatch serve`` flags;
``user`` cannot be translated (probewatch does not drop privileges).
"""

from __future__ import annotations

import json
from typing import Any

from . import ImportFailed, Translation, probe_name

DEFAULT_PORT = 9200  # Cmdchk's server default
KNOWN = ("user", "port", "log_location", "check_list")
# Cmdchk ran the checks at each request; a load balancer checks every few
# seconds, so the probes run every 10s and /status answers from their results.
PERIOD = "10s"
TIMEOUT = "5s"


def line_of(text: str, key: str) -> int:
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def read_file(path: str) -> tuple[dict[str, Any], str]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path}: is not UTF-8 text: {exc.reason}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}:{exc.lineno}: is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ImportFailed(f"{path}:1: must be a JSON object with user, port, log_location, check_list")
    return doc, text


def check(path: str, text: str, key: str, ok: bool, what: str) -> None:
    if not ok:
        raise ImportFailed(f"{path}:{line_of(text, key)}: {key} must be {what}")


def translate(paths: list[str]) -> Translation:
    t = Translation("cmdchk", list(paths), defaults={"period": PERIOD, "timeout": TIMEOUT,
                                                    "labels": {"group": "cmdchk"}})
    settings: dict[str, tuple[Any, str]] = {}  # key -> (value, the file it came from)
    for path in paths:
        doc, text = read_file(path)
        for key, val in doc.items():
            line = line_of(text, key)
            if key not in KNOWN:
                t.note(f"{path}:{line}: {key} is not a Cmdchk setting; ignored")
                continue
            if key == "port":
                check(path, text, key, isinstance(val, int) and not isinstance(val, bool)
                      and 0 < val < 65536, "a port number (1-65535)")
            elif key in ("user", "log_location"):
                check(path, text, key, isinstance(val, str), "a string")
            else:
                check(path, text, key, isinstance(val, dict) and all(
                    isinstance(codes, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                    for c in codes)
                    for codes in val.values()), 'an object of "command": [exit codes]')
            if key in settings and key == "check_list":
                t.note(f"{path}:{line}: check_list replaces the one from {settings[key][1]} "
                       "(later files override earlier ones, as in Cmdchk)")
            settings[key] = (val, path)
    port = settings.get("port", (DEFAULT_PORT, ""))[0]
    t.flags.append(f"--web.listen-address=:{port}")
    if "log_location" in settings:
        t.flags.append(f"--log.file={settings['log_location'][0]}")
    if "user" in settings:
        t.note(f"user={settings['user'][0]!r}: probewatch does not drop privileges; start it as "
               "that user (systemd User=, or runAsUser in Kubernetes)")
    checks = settings.get("check_list", ({"/bin/true": []}, ""))[0]
    if "check_list" not in settings:
        t.note("no check_list: Cmdchk's default, /bin/true, is the only check")
    taken: set[str] = set()
    for command, codes in checks.items():
        words = command.split()
        name = probe_name(words[0].rsplit("/", 1)[-1] if words else "check", taken)
        t.probes.append({"name": name, "kind": "command",
                         "command": {"argv": [command], "shell": True, "ok_codes": list(codes)}})
    t.comments = [
        "GET, HEAD and OPTIONS /status answer 200 when every check is up, else 503, as",
        "Cmdchk's server did; the checks run every 10s instead of at each request.",
    ]
    return t
