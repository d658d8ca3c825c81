"""One logfmt line per event: ``ts=... level=warn msg="..." key=value ...``.

Fields come from ``extra={"fields": {...}}`` on the logging call.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}


def quote(value: Any) -> str:
    """A logfmt value: bare when safe, else double-quoted with escapes."""
    text = value if isinstance(value, str) else str(value)
    if text and all(c.isprintable() and c not in ' "=\\' for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={stamp}.{int(record.msecs):03d}Z",
                 f"level={_NAMES.get(record.levelno, 'info')}",
                 f"msg={quote(record.getMessage())}"]
        fields = getattr(record, "fields", None) or {}
        parts.extend(f"{key}={quote(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"error={quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup(logger: logging.Logger, level: str, stream: Any = None) -> None:
    """Send ``logger``'s events at ``level`` and above to ``stream`` (stderr) as logfmt."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
