"""Masking secrets wherever a target, a definition or a message is shown or logged.

One place, used by `probewatch probe`, the status page and API, /metrics
labels (``target``) and messages:

- userinfo in URLs: ``http://user:secret@host/`` is shown ``http://user:***@host/``,
  and ``https://TOKEN@host/`` (a name alone, often a token) ``https://***@host/``;
- SIP URI passwords: ``sip:alice:secret@host`` is ``sip:alice:***@host`` (the
  user of ``sip:alice@host`` is an address, not a secret, and stays);
- query parameters named like credentials (``?token=...``, ``api_key``,
  ``password``, ``sig``...) have their values masked;
- request headers named like credentials (Authorization, Cookie, X-Api-Key and
  any name holding token, secret, password, auth, session, key...) and
  definition keys named like secrets (not the ``*_file`` options, whose value
  is a path) are shown as ``***``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

_SECRET_WORDS = ("token", "secret", "passw", "pwd", "auth", "cookie", "session", "credential",
                 "signature", "apikey", "api-key", "api_key", "private", "key")
# scheme://[user[:password]]@  -- userinfo runs to the first @ before any / ? # or space.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s]*)@")
# sip:user:password@ / sips:  (no //)
_SIP_PASSWORD = re.compile(r"(?i)\b(sips?:)([^:/?#@\s;]+):([^@\s]*)@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;][^=&#\s]*(?:token|secret|passw|pwd|auth|api_?key|apikey|sig|signature|"
    r"credential|session)[^=&#\s]*=)[^&#\s]*")


def is_secret_name(name: str) -> bool:
    """True for a header or key named like a credential."""
    lowered = name.lower()
    if lowered.endswith("_file"):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _ = m.group(2).partition(":")
    return f"{m.group(1)}{user}:{MASK}@" if sep else f"{m.group(1)}{MASK}@"


def mask_text(text: str) -> str:
    """``text`` with URL userinfo, SIP passwords and credential query values masked."""
    if "@" not in text and "=" not in text:
        return text
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _SIP_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)


def mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: (MASK if is_secret_name(str(k)) else mask_value(v)) for k, v in headers.items()}


def mask_value(value: Any, key: str = "") -> Any:
    """A definition (plain data) with every secret masked; the input is not changed."""
    if isinstance(value, str):
        return MASK if key and is_secret_name(key) and value else mask_text(value)
    if isinstance(value, dict):
        if key.lower() == "headers":
            return mask_headers(value)
        if key == "labels":
            return {k: mask_value(v) for k, v in value.items()}
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


def mask_log_records() -> None:
    """Mask secrets in every log record's message and arguments, whoever logs it
    (urllib3 at debug level logs request lines with their query strings)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in record.args)
        return record

    factory.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
