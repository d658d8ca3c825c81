"""Logging: one line per event, logfmt or JSON, fields from ``extra={...}``.

    ts=2026-11-25T19:49:46.123Z level=warning logger=probewatch.scheduler msg="probe down" probe=web reason=refused
    {"ts":"2026-11-25T19:49:46.123Z","level":"warning","logger":"probewatch.scheduler","msg":"probe down",...}

Every value is escaped: control characters (ESC, BEL, NUL, DEL, C1), lone
surrogates, line separators and bidi overrides are written as ``\\u001b`` and
the like, so text from a peer or a client can neither split a line nor drive
the reader's terminal.  A sink that stops accepting writes (a full disk) is
replaced by stderr, once, with one line saying so.  ``Throttle`` turns a flood
of the same event into one line per interval with a count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# What --log.level accepts, and the logging level each names (promlog spells warn; warning stays).
LEVELS = ("debug", "info", "warn", "error")
_LEVEL_NAMES = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}
FORMATS = ("logfmt", "json")

# C0 and C1 controls, DEL, lone surrogates, line/paragraph separators, bidi embeddings and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def level_name(text: str) -> str:
    """The logging level a --log.level value names; ValueError for anything else."""
    try:
        return _LEVEL_NAMES[text.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {text!r} (use {', '.join(LEVELS)})") from None


def _escape_unsafe(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """``text`` with every unsafe character written as an escape (see the module doc)."""
    return _UNSAFE.sub(_escape_unsafe, text)


def _value(v: Any) -> str:
    text = str(v)
    if text == "" or any(c in text for c in ' ="\\') or _UNSAFE.search(text):
        return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return text


def _timestamp(record: logging.LogRecord) -> str:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{ts}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        ("ts", _timestamp(record)), ("level", record.levelname.lower()),
        ("logger", record.name), ("msg", record.getMessage())]
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out.append((key, value))
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        out.append(("error", f"{type(exc).__name__}: {exc}"))
    return out


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{escape(key)}={_value(value)}" for key, value in _fields(record))


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; keys in the same order as logfmt's."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {escape(key): _json_safe(value) for key, value in _fields(record)}
        # json.dumps escapes C0 controls itself; DEL, C1, surrogates and the rest are escaped here.
        return escape(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


class FallbackHandler(logging.StreamHandler[TextIO]):
    """A stream handler that, when its stream fails, says so once and goes on on stderr.

    A failure on stderr itself (a closed pipe) drops the record silently: there
    is nowhere left to say it, and a traceback per record helps nobody.
    """

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.sink_name = name
        self.fell_back = False

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        broken = isinstance(exc, OSError) or (isinstance(exc, ValueError) and "closed file" in str(exc))
        if not broken:  # a bug in a log call (bad % arguments), not a broken sink
            super().handleError(record)
            return
        if self.fell_back or self.stream is sys.stderr:
            return
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        # Not setStream: it flushes the broken stream first, which raises again.
        failed, self.fell_back, self.stream = self.stream, True, sys.stderr
        with contextlib.suppress(Exception):  # the sink is broken already; closing is a courtesy
            failed.close()
        notice = logging.LogRecord("probewatch", logging.WARNING, __file__, 0,
                                   "cannot write log file; logging to stderr", (), None)
        notice.file, notice.error = self.sink_name, reason
        self.emit(notice)
        self.emit(record)


def _level_arg(text: str) -> str:
    try:
        level_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def add_flags(parser: argparse.ArgumentParser) -> None:
    """--log.level, --log.format and --log.file: the same on serve, probe and agent."""
    parser.add_argument("--log.level", dest="log_level", default="info", type=_level_arg,
                        metavar="|".join(LEVELS),
                        help="least severe level logged (default info; warning is an alias of warn)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=FORMATS,
                        help="one logfmt line or one JSON object per event (default logfmt)")
    parser.add_argument("--log.file", dest="log_file", default="", metavar="FILE",
                        help="log to this file instead of stderr (stderr, after one line saying why, "
                             "when it cannot be opened or written)")


def setup(level: str = "info", file: str | None = None, fmt: str = "logfmt") -> None:
    """Log to ``file`` if given and writable, else to stderr (saying so once)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    stream: TextIO = sys.stderr
    problem = None
    if file:
        try:
            stream = open(file, "a", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                          buffering=1)  # lives as long as the process
        except OSError as exc:
            problem = f"cannot open log file {file}: {exc.strerror or exc}; logging to stderr"
    handler = FallbackHandler(stream, file or "stderr")
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level_name(level))
    if problem:
        logging.getLogger("probewatch").warning(problem)


class Throttle:
    """Logs the first of each kind of event per interval in full, then counts the rest.

    ``throttle.log(logging.WARNING, "bad_signature", "refused request", extra={...})``
    writes the line the first time; repeats of the same key within ``interval``
    are counted and, when the interval ends, summed up in one line such as
    ``refused 9,999 more datagrams (bad signature) in the last 10s`` (the
    ``summary`` template, with ``{count}``, ``{s}``, ``{what}`` and ``{seconds}``; the
    line carries ``count`` and the key as ``field``).  A
    timer writes the summary even when the flood stops; ``close()`` writes what
    is pending.  ``interval`` 0 logs every event.  Thread-safe.
    """

    def __init__(self, logger: logging.Logger, summary: str, interval: float = 10.0,
                 field: str = "key", describe: Callable[[str], str] = str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.describe = describe
        self.summary = summary
        self.field = field
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, list[Any]] = {}  # key -> [start, suppressed, level, extra]
        self._timer: threading.Timer | None = None

    def log(self, level: int, key: str, msg: str, extra: dict[str, Any] | None = None,
            exc_info: bool = False) -> bool:
        """Log now (True) or count it for the summary (False)."""
        if self.interval <= 0:
            self.logger.log(level, msg, extra=extra, exc_info=exc_info)
            return True
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window[0] < self.interval:
                window[1] += 1
                window[2] = max(window[2], level)
                self._arm(window[0] + self.interval - now)
                return False
            ended = self._windows.pop(key, None)
            self._windows[key] = [now, 0, level, extra]
        if ended is not None and ended[1]:
            self._write(key, ended, now)
        self.logger.log(level, msg, extra=extra, exc_info=exc_info)
        return True

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(max(delay, 0.01), self.flush, kwargs={"due_only": True})
            self._timer.daemon = True
            self._timer.start()

    def flush(self, due_only: bool = False) -> None:
        """Write the summaries of ended windows (of every window unless ``due_only``)."""
        now = self.clock()
        with self._lock:
            self._timer = None
            done = {k: w for k, w in self._windows.items() if not due_only or now - w[0] >= self.interval}
            for key in done:
                del self._windows[key]
            pending = [w[0] + self.interval - now for w in self._windows.values() if w[1]]
            if pending:
                self._arm(min(pending))
        for key, window in done.items():
            if window[1]:
                self._write(key, window, now)

    def _write(self, key: str, window: list[Any], now: float) -> None:
        seconds = min(max(now - window[0], 0.0), self.interval)
        text = self.summary.format(count=f"{window[1]:,}", s="" if window[1] == 1 else "s",
                                   what=self.describe(key),
                                   seconds=f"{seconds:.3g}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms")
        self.logger.log(window[2], text, extra={self.field: key, "count": window[1]})

    def close(self) -> None:
        """Cancel the timer and write every pending summary."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()
