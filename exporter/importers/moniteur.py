"""Moniteur's tests.cfg (and notifier.cfg) as a probewatch config (and Alertmanager's).

Each [section] of tests.cfg becomes a probe of the same name:

    script=ping.py     arguments=HOST, TIMEOUT_MS     -> icmp, reply_timeout (ms as a duration)
    script=connect.py  arguments=HOST, PORT[, k=v...] -> tcp HOST:PORT; hello_message,
                       success_message, bye_message   -> send, expect, bye
    script=sip.py      arguments=URI[, k=v...]        -> sip INVITE; port -> local_port,
                       success_message -> success_state, log_level
    period=N -> period: Ns; active=True|False -> active; timeout=N -> timeout: Ns

Moniteur notified at the first failure: ``defaults: {failures: 1}``.  Its
``aggregate`` (notify again every N failures) is Alertmanager's job: from
notifier.cfg's [EMAIL] comes an Alertmanager config whose routes re-notify every
``aggregate x period``; the SMTP password goes to its own file, never inline.
"""

from __future__ import annotations

import configparser
import re
from typing import Any

import yaml

from probes.durations import format_duration
from probes.netaddr import join_host_port

from . import ImportFailed, Translation, probe_name

KNOWN_KEYS = {"script", "arguments", "period", "active", "aggregate"}
SIP_STATES = ("CALLING", "EARLY", "CONNECTING", "CONFIRMED")
RECEIVER = "moniteur-email"
# Moniteur's template codes, as Alertmanager template expressions.
TEMPLATE_CODES = {
    "code": "{{ .CommonAnnotations.return_code }}",
    "test": "{{ .CommonLabels.probe }}",
    "date": '{{ (index .Alerts 0).StartsAt.Format "2006-01-02 15:04:05 MST" }}',
    "repeat": "{{ .CommonAnnotations.failures_so_far }}",
    "message": "{{ .CommonAnnotations.message }}",
}


def read_ini(path: str) -> tuple[configparser.RawConfigParser, dict[str, int]]:
    """The parsed file and each section's line; ImportFailed naming FILE:LINE."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path}: is not UTF-8 text: {exc.reason}") from None
    parser = configparser.RawConfigParser(comment_prefixes=(";", "#"), strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ImportFailed(f"{path}:{exc.lineno}: a line before any [section]: {exc.line.strip()!r}") from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ImportFailed(f"{path}:{lineno}: cannot be parsed: {line.strip()!r}") from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        raise ImportFailed(f"{path}:{exc.lineno}: {exc.message.split(': ', 1)[-1]}") from None
    except configparser.Error as exc:
        raise ImportFailed(f"{path}: {exc}") from None
    lines: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if m := re.match(r"\s*\[([^\]]+)\]", line):
            lines.setdefault(m.group(1), i)
    return parser, lines


def value(parser: configparser.RawConfigParser, section: str, key: str) -> str:
    """A value as Moniteur read it: ConfigParser's %% stood for a single %."""
    return parser.get(section, key, raw=True).replace("%%", "%")


def split_arguments(text: str) -> tuple[list[str], dict[str, str]]:
    """``a, b, key=value`` -> (["a", "b"], {"key": "value"})."""
    positional, named = [], {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, rest = part.partition("=")
        if sep and re.fullmatch(r"[a-z_]+", key.strip()):
            named[key.strip()] = rest.strip()
        else:
            positional.append(part)
    return positional, named


def seconds(text: str, where: str, t: Translation) -> int | None:
    try:
        n = int(text.strip())
    except ValueError:
        t.note(f"{where}: {text!r} is not a whole number of seconds; left out")
        return None
    if n < 1:
        t.note(f"{where}: {n} is not a positive number of seconds; left out")
        return None
    return n


def host_port(host: str, port: str) -> str:
    return join_host_port(host, port)


def translate_tests(path: str) -> tuple[Translation, list[tuple[str, int, int]]]:
    """The probes, and (name, period, aggregate) for the re-notification routes."""
    parser, lines = read_ini(path)
    t = Translation("moniteur", [path], defaults={"failures": 1})
    t.comments = ["Moniteur notified at the first failure: failures: 1 (see defaults).",
                  "Its `aggregate` (notify again every N failures) is in the Alertmanager config",
                  "made from notifier.cfg: repeat_interval = aggregate x period - period/2, "
                  "and the probe is labelled renotify: N so its reminders are numbered."]
    taken: set[str] = set()
    aggregates = []
    for section in parser.sections():
        where = f"{path}:{lines.get(section, 0)}: [{section}]"
        keys = dict(parser.items(section, raw=True))
        for key in sorted(set(keys) - KNOWN_KEYS):
            t.note(f"{where}: {key} is not a Moniteur test setting; ignored")
        script = keys.get("script", "").strip()
        args = value(parser, section, "arguments") if "arguments" in keys else ""
        positional, named = split_arguments(args)
        probe: dict[str, Any] = {"name": probe_name(section, taken)}
        if probe["name"] != section:
            t.note(f"{where}: renamed {probe['name']!r} (probe names are letters, digits, _ . -)")
        built = build_probe(script, positional, named, probe, where, t)
        if not built:
            taken.discard(probe["name"])
            continue
        period = seconds(keys["period"], f"{where} period", t) if "period" in keys else None
        if period is not None:
            probe["period"] = f"{period}s"
        timeout = probe.pop("_timeout", None)
        if timeout is not None and (period is None or timeout < period):
            probe["timeout"] = f"{timeout}s"
        elif timeout is not None:
            t.note(f"{where}: timeout={timeout} is not shorter than period={period}; "
                   "probewatch's default timeout is used")
        if "active" in keys:
            active = keys["active"].strip().lower()
            if active not in ("true", "false"):
                t.note(f"{where}: active={keys['active']!r} is not True or False; taken as True")
            probe["active"] = active != "false"
        if "aggregate" in keys:
            n = seconds(keys["aggregate"], f"{where} aggregate", t)
            if n is not None:
                aggregates.append((probe["name"], period or 30, n))
                # The rules number the reminders of probes labelled renotify: "N".
                probe["labels"] = {**probe.get("labels", {}), "renotify": str(n)}
        order = ("name", "kind", "target", "period", "timeout", "active")
        t.probes.append({k: probe[k] for k in sorted(probe, key=lambda k: (k not in order,
                                                                           order.index(k) if k in order else 0))})
    return t, aggregates


def build_probe(script: str, positional: list[str], named: dict[str, str], probe: dict[str, Any],
                where: str, t: Translation) -> bool:
    """Fill ``probe`` for one Moniteur script; False (with a note) when it cannot be."""
    def unused(known: set[str]) -> None:
        for key in sorted(set(named) - known):
            t.note(f"{where}: argument {key}={named[key]!r} has no probewatch equivalent; ignored")

    if script == "ping.py":
        if not positional:
            t.note(f"{where}: ping.py needs a host in arguments; left out")
            return False
        probe.update(kind="icmp", target=positional[0])
        if len(positional) > 1:
            if positional[1].isdigit() and int(positional[1]) > 0:
                probe["icmp"] = {"reply_timeout": format_duration(int(positional[1]) / 1000)}
            else:
                t.note(f"{where}: ping timeout {positional[1]!r} is not milliseconds; ignored")
        unused(set())
        return True
    if script == "connect.py":
        if len(positional) < 2 or not positional[1].isdigit():
            t.note(f"{where}: connect.py needs arguments=HOST, PORT; left out")
            return False
        probe.update(kind="tcp", target=host_port(positional[0], positional[1]))
        tcp = {k2: named[k1] for k1, k2 in (("hello_message", "send"), ("success_message", "expect"),
                                            ("bye_message", "bye")) if named.get(k1)}
        if tcp:
            probe["tcp"] = tcp
        if "timeout" in named:
            probe["_timeout"] = seconds(named["timeout"], f"{where} timeout", t)
        unused({"hello_message", "success_message", "bye_message", "timeout"})
        return True
    if script == "sip.py":
        if not positional:
            t.note(f"{where}: sip.py needs a SIP URI in arguments; left out")
            return False
        sip: dict[str, Any] = {"method": "INVITE", "success_state": "CONFIRMED"}
        state = named.get("success_message", "CONFIRMED").upper()
        if state in SIP_STATES:
            sip["success_state"] = state
        else:
            t.note(f"{where}: success_message={state!r} is not one of {', '.join(SIP_STATES)}; "
                   "CONFIRMED is used")
        for key, option in (("port", "local_port"), ("log_level", "log_level")):
            if key in named:
                if named[key].isdigit():
                    sip[option] = int(named[key])
                else:
                    t.note(f"{where}: {key}={named[key]!r} is not a number; ignored")
        if "timeout" in named:
            probe["_timeout"] = seconds(named["timeout"], f"{where} timeout", t)
        probe.update(kind="sip", target=positional[0], sip=sip)
        unused({"port", "log_level", "success_message", "timeout"})
        return True
    t.note(f"{where}: script={script or '(none)'} has no probewatch kind (ping.py, connect.py, "
           "sip.py have); left out")
    return False


def translate_template(text: str) -> str:
    return re.sub(r"%\((\w+)\)s", lambda m: TEMPLATE_CODES.get(m.group(1), m.group(0)), text)


def duration(total: int) -> str:
    """Seconds as Alertmanager writes a duration (1h30m, 200s)."""
    if total % 3600 == 0:
        return f"{total // 3600}h"
    if total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"


def translate_notifier(path: str, aggregates: list[tuple[str, int, int]], t: Translation,
                       password_file: str) -> str:
    """notifier.cfg's [EMAIL] as an Alertmanager config (YAML); the password into t.files."""
    parser, lines = read_ini(path)
    t.sources.append(path)
    email = None
    for section in parser.sections():
        script = parser.get(section, "script", raw=True, fallback="").strip()
        if script == "mailer.py":
            email = section
        else:
            t.note(f"{path}:{lines.get(section, 0)}: [{section}] script={script or '(none)'} is "
                   "not Moniteur's mailer.py; no Alertmanager receiver for it")
    if email is None:
        raise ImportFailed(f"{path}:1: no [EMAIL] section with script=mailer.py")
    where = f"{path}:{lines.get(email, 0)}: [{email}]"

    def get(key: str, default: str = "") -> str:
        return value(parser, email, key).strip() if parser.has_option(email, key) else default

    def flag(key: str) -> bool:
        return get(key, "False").lower() == "true"

    for key in ("server_host", "from", "to"):
        if not get(key):
            raise ImportFailed(f"{where}: {key} is required to send email")
    smtp: dict[str, Any] = {"smtp_smarthost": host_port(get("server_host"), get("server_port", "25")),
                            "smtp_from": get("from"), "smtp_require_tls": flag("tls_required")}
    if flag("ssl_required"):
        t.note(f"{where}: ssl_required=True: Alertmanager uses implicit TLS only on port 465; "
               "smtp_require_tls is set, check the server's port")
        smtp["smtp_require_tls"] = True
    if flag("auth_required"):
        smtp["smtp_auth_username"] = get("login")
        smtp["smtp_auth_password_file"] = password_file
        t.files[password_file] = (get("password"), 0o600)
    email_config: dict[str, Any] = {"to": get("to"), "send_resolved": True}
    if get("subject"):
        email_config["headers"] = {"Subject": translate_template(get("subject"))}
    if get("body"):
        email_config["text"] = translate_template(get("body")) + "\n"
    for code in sorted(set(re.findall(r"%\((\w+)\)s", get("subject") + get("body"))) - set(TEMPLATE_CODES)):
        t.note(f"{where}: template code %({code})s has no Alertmanager equivalent; left as written")
    if "%(repeat)s" in get("subject") + get("body"):
        t.note(f"{where}: %(repeat)s became the failures so far (the alert's failures_so_far, "
               "fresh in every reminder)")
    routes = []
    by_interval: dict[tuple[int, int], list[str]] = {}
    for name, period, aggregate in aggregates:
        by_interval.setdefault((period, aggregate), []).append(name)
    for (period, aggregate), names in sorted(by_interval.items()):
        routes.append({
            "matchers": [f'probe=~"{"|".join(re.escape(n) for n in names)}"'],
            # Alertmanager re-sends on its group_interval ticks: one per period
            # makes "every `aggregate` failures" exact to within one period.  It
            # compares repeat_interval with the end of the last send, so half a
            # tick less keeps reminders from slipping one tick each time.
            "group_interval": duration(period),
            "repeat_interval": duration(period * aggregate - period // 2),
        })
    config = {
        "global": smtp,
        "route": {"receiver": RECEIVER, "group_by": ["alertname", "probe"], "group_wait": "5s",
                  "group_interval": "1m", "repeat_interval": "4h", "routes": routes},
        "receivers": [{"name": RECEIVER, "email_configs": [email_config]}],
    }
    head = (f"# Alertmanager config translated by `probewatch import moniteur` from {path}.\n"
            "# Each route re-notifies every aggregate x period of its probes (Moniteur's aggregate).\n")
    return head + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
