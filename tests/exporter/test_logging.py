"""--log.file (exporter/logs.py): requests and state changes, one logfmt line each,
in the file; on stderr, after one warning, when the file cannot be opened."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.exporter.exporter_process import serve
from tests.support import wait_for

LOGFMT = re.compile(r'^ts=\S+Z level=(debug|info|warning|error) logger=\S+ msg=("[^"]*"|\S+)( |$)')


def probe_up(url: str, name: str) -> bool | None:
    up: bool | None = requests.get(f"{url}/api/v1/probes/{name}", timeout=10).json()["up"]
    return up


def test_state_changes_and_requests_go_to_the_log_file(tmp_path: Path) -> None:
    flag, log_file = tmp_path / "flag", tmp_path / "probewatch.log"
    flag.touch()
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n  - {name: toggle, kind: command, period: 300ms, timeout: 200ms,"
                      f" command: {{argv: [test, -e, '{flag}']}}}}\n")
    with serve(config, f"--log.file={log_file}", "--log.level=debug") as pw:  # debug: request lines
        wait_for(lambda: probe_up(pw.url, "toggle") is True, 10, what="toggle up")
        flag.unlink()
        wait_for(lambda: probe_up(pw.url, "toggle") is False, 10, what="toggle down")
        flag.touch()
        wait_for(lambda: probe_up(pw.url, "toggle") is True, 10, what="toggle up again")
        assert requests.get(f"{pw.url}/status?probe=toggle", timeout=10).status_code == 200
        assert requests.get(f"{pw.url}/nowhere", timeout=10).status_code == 404
        proc = pw.proc
    console = proc.stdout.read() if proc.stdout else ""
    lines = log_file.read_text().splitlines()
    assert all(LOGFMT.match(line) for line in lines), [x for x in lines if not LOGFMT.match(x)]
    changes = [line for line in lines if 'msg="probe ' in line and "probe=toggle" in line]
    assert len(changes) == 2, changes
    assert 'level=warning logger=probewatch.scheduler msg="probe down" probe=toggle' in changes[0]
    assert "reason=unexpected_code code=1" in changes[0]
    assert 'level=info logger=probewatch.scheduler msg="probe up" probe=toggle' in changes[1]
    assert any("msg=request method=GET path=/status status=200 client=127.0.0.1" in line
               for line in lines)
    assert any("msg=request method=GET path=/nowhere status=404" in line for line in lines)
    assert "msg=request" not in console and "probe down" not in console


def test_an_unopenable_log_file_is_reported_once_and_stderr_used(tmp_path: Path) -> None:
    log_file = tmp_path / "no-such-dir" / "probewatch.log"
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n  - {name: failing, kind: command, period: 300ms, timeout: 200ms,"
                      " command: {argv: ['false']}}\n")
    with serve(config, f"--log.file={log_file}", "--log.level=debug") as pw:  # debug: request lines
        wait_for(lambda: probe_up(pw.url, "failing") is False, 10, what="failing to run")
        assert requests.get(f"{pw.url}/status", timeout=10).status_code == 503
        running = pw
    stderr = running.output().splitlines()
    warnings = [line for line in stderr if "cannot open log file" in line]
    assert len(warnings) == 1, stderr
    assert warnings[0].startswith("ts=") and "level=warning" in warnings[0]
    assert str(log_file) in warnings[0] and "logging to stderr" in warnings[0]
    assert "No such file or directory" in warnings[0]
    assert any('msg="probe down" probe=failing' in line for line in stderr)
    assert any("msg=request method=GET path=/status status=503" in line for line in stderr)
    assert not log_file.exists()
