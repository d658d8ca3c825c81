"""pjsip's log lines into Python logging (probes/sip_log.py): levels, the lines pjlib prints to stdout."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import textwrap

import pytest

from tests.support import IN_CI, ROOT, no_sip_reason

if importlib.util.find_spec("pjsua2") is None:  # the optional extra, as in test_sip.py
    if IN_CI and not no_sip_reason():
        raise ImportError("pjsua2 is not installed (CI must have it: .ci/run installs .[sip])")
    pytest.skip(f"pjsua2 is not installed ({no_sip_reason() or 'pip install probewatch[sip]'})",
                allow_module_level=True)

import pjsua2 as pj

from probes.sip_log import PjsipLogWriter


def entry(level: int, msg: str) -> pj.LogEntry:
    e = pj.LogEntry()
    e.level, e.msg = level, msg
    return e


@pytest.mark.parametrize(("pjsip_level", "python_level"), [
    (1, logging.ERROR), (2, logging.WARNING), (3, logging.DEBUG), (5, logging.DEBUG)])
def test_pjsip_levels_map_to_python_levels(caplog: pytest.LogCaptureFixture, pjsip_level: int,
                                           python_level: int) -> None:
    with caplog.at_level(logging.DEBUG, logger="probewatch.sip"):
        PjsipLogWriter().write(entry(pjsip_level, "pjsua_core.c  something   happened\n"))
    (record,) = caplog.records
    assert (record.name, record.levelno, record.getMessage()) == (
        "probewatch.sip", python_level, "pjsua_core.c something happened")
    assert record.pjsip_level == pjsip_level  # type: ignore[attr-defined]


def test_a_full_call_table_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The worker queues the call; pjsip's own 'Error making call ... PJ_ETOOMANY' is noise."""
    with caplog.at_level(logging.DEBUG, logger="probewatch.sip"):
        PjsipLogWriter().write(entry(1, "pjsua_call.c Error making call: Too many objects"
                                        " of the specified type (PJ_ETOOMANY) [status=70010]"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_a_multi_line_block_keeps_its_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="probewatch.sip"):
        PjsipLogWriter().write(entry(4, "Call 0 stats:\n   RX pt=0\n   TX pt=0\n"))
    assert caplog.records[0].getMessage() == "Call 0 stats:\n   RX pt=0\n   TX pt=0"


def test_lines_below_the_loggers_level_cost_nothing_and_bad_entries_never_raise(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="probewatch.sip"):
        writer = PjsipLogWriter()
        writer.write(entry(4, "debug chatter"))
        writer.write(object())  # no level, no msg: swallowed (nothing may cross into C++)
    assert caplog.records == []


def test_pjlibs_own_stdout_lines_go_to_the_log_and_the_rest_stays_on_stdout() -> None:
    """What pjlib prints to file descriptor 1 before a writer exists (run in a child process,
    so the test's own stdout is not the one redirected)."""
    code = textwrap.dedent("""
        import logging, os, sys
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format="LOG %(levelname)s %(message)s")
        from probes.sip_log import stdout_into_log
        with stdout_into_log():
            os.write(1, b"12:00:00.000 os_core_unix.c !pjlib 2.15 for POSIX initialized\\n")
            os.write(1, b"not pjlib: an application line\\n")
        os.write(1, b"after\\n")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "not pjlib: an application line\nafter\n"
    assert "LOG DEBUG os_core_unix.c !pjlib 2.15 for POSIX initialized" in done.stderr
