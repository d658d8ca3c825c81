"""``--web.config.file``: TLS, basic auth and response headers, in exporter-toolkit's format.

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2b$10$...           # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

``load_web_config(path)`` returns a WebConfig or raises ConfigError listing
every problem as ``FILE:LINE: key: what``, like the probe config.  The file is
read once, at start; restart probewatch to apply a change.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from .problems import ConfigError, ConfigProblem
from .yamlsource import LineDict, YamlError, load_yaml

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# exporter-toolkit's other policies accept a client certificate without verifying
# it, which Python's ssl module cannot do; its own docs call them insecure.
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# The headers exporter-toolkit lets a web config set, with the values it accepts (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
TLS_UNSUPPORTED = ("cert", "key", "client_ca", "cipher_suites", "curve_preferences",
                   "prefer_server_cipher_suites", "client_allowed_sans")
HTTP_KEYS = ("headers", "http2")
AUTH_CACHE_SIZE = 1024
# Compared against when the user name is unknown, so a wrong name costs what a wrong password does.
_DECOY_HASH = bcrypt.hashpw(b"probewatch decoy", bcrypt.gensalt(4))


@dataclass
class WebConfig:
    """What the server applies to every request; the default is plain HTTP, no auth."""

    path: str = ""
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    _ok: dict[bytes, None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authenticate(self, authorization: str | None) -> str | None:
        """None when the request may go on; else why not (it is answered 401)."""
        if not self.users:
            return None
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return "basic authentication required"
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "malformed basic authentication"
        if not sep:
            return "malformed basic authentication"
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), hashed or b"", password.encode()])).digest()
        with self._lock:
            if key in self._ok:
                return None
        # bcrypt is slow on purpose (~50 ms at cost 10), so successes are cached, as exporter-toolkit does.
        ok = bcrypt.checkpw(password.encode(), hashed or _DECOY_HASH) and hashed is not None
        if not ok:
            return "wrong user name or password"
        with self._lock:
            if len(self._ok) >= AUTH_CACHE_SIZE:
                self._ok.pop(next(iter(self._ok)))
            self._ok[key] = None
        return None


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[ConfigProblem] = []

    def add(self, line: int, key: str, message: str) -> None:
        self.items.append(ConfigProblem(self.path, line, "", key, message))


def load_web_config(path: str) -> WebConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, 0, "", "", f"cannot be read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, 0, "", "", f"is not UTF-8 text: {exc.reason}")]) from None
    return parse_web_config(text, path)


def parse_web_config(text: str, path: str) -> WebConfig:
    problems = _Problems(path)
    try:
        doc = load_yaml(text)
    except YamlError as exc:
        raise exc.located(path) from None
    if doc is None:
        doc = LineDict()
    if not isinstance(doc, dict):
        raise ConfigError([ConfigProblem(path, getattr(doc, "line", 1), "", "", "must be a mapping")])
    config = WebConfig(path=path)
    _unknown(doc, TOP_KEYS, "", problems)
    if "rate_limit" in doc:
        problems.add(_line(doc, "rate_limit"), "rate_limit", "is not supported by probewatch")
    base = os.path.dirname(os.path.abspath(path))
    tls = _mapping(doc, "tls_server_config", problems)
    if tls is not None:
        config.tls = _tls(tls, base, problems)
    http = _mapping(doc, "http_server_config", problems)
    if http is not None:
        config.headers = _headers(http, problems)
    users = _mapping(doc, "basic_auth_users", problems)
    if users is not None:
        config.users = _users(users, problems)
    if problems.items:
        raise ConfigError(sorted(problems.items, key=lambda p: p.line))
    return config


def _line(container: Any, key: str) -> int:
    return container.line_of(key) if isinstance(container, LineDict) else 0


def _mapping(doc: dict[str, Any], key: str, problems: _Problems, prefix: str = "") -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(_line(doc, key), prefix + key, "must be a mapping")
        return None
    return value


def _unknown(doc: dict[str, Any], known: tuple[str, ...], prefix: str, problems: _Problems,
             unsupported: tuple[str, ...] = ()) -> None:
    for key in doc:
        if key in known:
            continue
        if key in unsupported:
            problems.add(_line(doc, key), prefix + key, "is not supported by probewatch")
            continue
        close = difflib.get_close_matches(key, known, 1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
        problems.add(_line(doc, key), prefix + key, f"unknown key{hint}")


def _string(doc: dict[str, Any], key: str, problems: _Problems, prefix: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.add(_line(doc, key), prefix + key, "must be a string")
        return ""
    return value


def _tls(doc: dict[str, Any], base: str, problems: _Problems) -> ssl.SSLContext | None:
    p = "tls_server_config."
    _unknown(doc, TLS_KEYS, p, problems, TLS_UNSUPPORTED)
    cert, key = _string(doc, "cert_file", problems, p), _string(doc, "key_file", problems, p)
    auth = _string(doc, "client_auth_type", problems, p) or "NoClientCert"
    ca = _string(doc, "client_ca_file", problems, p)
    if not any(k in doc for k in TLS_KEYS + TLS_UNSUPPORTED):
        return None  # an empty tls_server_config means plain HTTP, as in exporter-toolkit
    line = doc.line if isinstance(doc, LineDict) else 0
    if not cert:
        problems.add(line, p + "cert_file", "is required to serve TLS")
    if not key:
        problems.add(line, p + "key_file", "is required to serve TLS")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = _string(doc, name, problems, p) or default
        if text not in TLS_VERSIONS:
            problems.add(_line(doc, name), p + name, f"{text!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions[name] = TLS_VERSIONS.get(text, TLS_VERSIONS[default])
    if versions["min_version"] > versions["max_version"]:
        problems.add(_line(doc, "min_version"), p + "min_version", "is above max_version")
    if auth in UNVERIFIED_CLIENT_AUTH:
        problems.add(_line(doc, "client_auth_type"), p + "client_auth_type",
                     f"{auth} accepts unverified client certificates and is not supported by "
                     "probewatch; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    elif auth not in CLIENT_AUTH:
        problems.add(_line(doc, "client_auth_type"), p + "client_auth_type",
                     f"{auth!r} is not one of {', '.join(CLIENT_AUTH)}")
    elif CLIENT_AUTH[auth] != ssl.CERT_NONE and not ca:
        problems.add(_line(doc, "client_auth_type"), p + "client_ca_file",
                     f"is required with client_auth_type {auth}")
    elif CLIENT_AUTH[auth] == ssl.CERT_NONE and ca:
        problems.add(_line(doc, "client_ca_file"), p + "client_ca_file",
                     "is set but client_auth_type is NoClientCert; set client_auth_type: "
                     "RequireAndVerifyClientCert to check client certificates")
    if not cert or not key:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = min(versions.values())
    context.maximum_version = versions["max_version"]
    cert_path, key_path = os.path.join(base, cert), os.path.join(base, key)
    missing = [name for name, file in (("cert_file", cert_path), ("key_file", key_path))
               if not os.path.isfile(file)]
    for name in missing:
        problems.add(_line(doc, name), p + name, f"{os.path.join(base, doc[name])}: no such file")
    if not missing:
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            problems.add(_line(doc, "cert_file"), p + "cert_file",
                         f"cannot load the certificate and key ({cert_path}, {key_path}): {_ssl_reason(exc)}")
    context.verify_mode = CLIENT_AUTH.get(auth, ssl.CERT_REQUIRED)
    if ca:
        ca_path = os.path.join(base, ca)
        try:
            context.load_verify_locations(cafile=ca_path)
        except (ssl.SSLError, OSError) as exc:
            problems.add(_line(doc, "client_ca_file"), p + "client_ca_file",
                         f"cannot load {ca_path}: {_ssl_reason(exc)}")
    return context


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _headers(doc: dict[str, Any], problems: _Problems) -> dict[str, str]:
    p = "http_server_config."
    _unknown(doc, HTTP_KEYS, p, problems)
    if doc.get("http2") not in (None, False, True):
        problems.add(_line(doc, "http2"), p + "http2", "must be true or false")
    # http2: true is exporter-toolkit's default; probewatch serves HTTP/1.1, which every scraper speaks.
    headers = _mapping(doc, "headers", problems, p)
    out: dict[str, str] = {}
    canonical = {name.lower(): name for name in HEADERS}
    for name, value in (headers or {}).items():
        key = f"{p}headers.{name}"
        proper = canonical.get(str(name).lower())
        if proper is None:
            problems.add(_line(headers, name), key,
                         f"cannot be set here; allowed headers: {', '.join(HEADERS)}")
            continue
        if value is None or value == "":
            continue  # blank means unset
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            problems.add(_line(headers, name), key, "must be a one-line string")
            continue
        allowed = HEADERS[proper]
        if allowed is not None and value.lower() not in allowed:
            problems.add(_line(headers, name), key, f"{value!r} is not one of {', '.join(allowed)}")
            continue
        out[proper] = value
    return out


def _users(doc: dict[str, Any], problems: _Problems) -> dict[str, bytes]:
    out = {}
    for user, hashed in doc.items():
        key = f"basic_auth_users.{user}"
        if ":" in str(user):
            problems.add(_line(doc, user), key, "a user name cannot contain ':'")
            continue
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            problems.add(_line(doc, user), key,
                         "must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters), not a plain "
                         "password; make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
            continue
        out[str(user)] = hashed.encode()
    return out


def _is_bcrypt(text: str) -> bool:
    if len(text) != 60 or text[:4] not in ("$2a$", "$2b$", "$2y$") or text[6] != "$":
        return False
    try:
        bcrypt.checkpw(b"", text.encode())  # raises ValueError on a malformed salt
    except ValueError:
        return False
    return True
