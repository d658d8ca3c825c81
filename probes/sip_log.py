"""pjsip's log output into Python logging (logger probewatch.sip).

``PjsipLogWriter`` is installed as the endpoint's log writer; ``stdout_into_log``
catches the lines pjlib prints to stdout before a writer can be installed.  Both
are used by the SIP worker thread (probes/sip_endpoint.py), which owns the writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from typing import Any

import pjsua2 as pj

log = logging.getLogger("probewatch.sip")

LOG_LEVELS = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING}
_PJLOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")


class PjsipLogWriter(pj.LogWriter):
    """pjsip's log lines into Python logging (logger probewatch.sip)."""

    def write(self, entry: Any) -> None:
        try:
            level = LOG_LEVELS.get(entry.level, logging.DEBUG)
            if "PJ_ETOOMANY" in entry.msg:  # a full call table: the worker queues the call
                level = logging.DEBUG
            if log.isEnabledFor(level):
                text = entry.msg.rstrip()
                log.log(level, text if "\n" in text else " ".join(text.split()),
                        extra={"pjsip_level": entry.level})
        except Exception:  # an exception must not cross into C++
            pass


@contextlib.contextmanager
def stdout_into_log() -> Any:
    """Send what is written to file descriptor 1 meanwhile to the log (pjlib's first lines)."""
    try:
        capture = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        saved = os.dup(1)
    except OSError:  # no writable temp dir: leave stdout alone
        yield
        return
    with capture:
        os.dup2(capture.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            capture.seek(0)
            for raw in capture.read().decode(errors="replace").splitlines():
                if _PJLOG_LINE.match(raw):
                    log.debug(" ".join(raw.split()[1:]), extra={"pjsip_level": 4})
                elif raw:
                    os.write(1, (raw + "\n").encode())
