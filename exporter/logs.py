"""logfmt logging: one line per event, fields from ``extra={...}``.

    ts=2026-11-25T19:49:46.123Z level=warning logger=probewatch.scheduler msg="probe down" probe=web reason=refused
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _value(v: Any) -> str:
    text = str(v)
    if text == "" or any(c in text for c in ' ="\n\t\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={ts}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"msg={_value(record.getMessage())}"]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={_value(value)}")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"error={_value(f'{type(exc).__name__}: {exc}')}")
        return " ".join(parts)


LEVELS = ("debug", "info", "warning", "error")


def setup(level: str = "info", file: str | None = None) -> None:
    """Log to ``file`` if given and writable, else to stderr (saying so once)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    stream: TextIO = sys.stderr
    problem = None
    if file:
        try:
            stream = open(file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the process
        except OSError as exc:
            problem = f"cannot open log file {file}: {exc.strerror or exc}; logging to stderr"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    if problem:
        logging.getLogger("probewatch").warning(problem)
