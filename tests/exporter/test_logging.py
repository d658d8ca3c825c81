"""Logging (exporter/logs.py): state changes and requests, one logfmt or JSON line each, in
--log.file or on stderr; levels; control characters escaped; a sink that fails falls back once."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

from exporter import logs
from tests.exporter.exporter_process import serve
from tests.support import ROOT, missing, probewatch_argv, wait_for

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


# --- levels, formats, escaping, a failing sink ------------------------------------

HOSTILE = r"printf 'red\033[31m bell\007 nul\000 del\177 end'; exit 1"


def _toggle_config(tmp_path: Path, flag: Path) -> Path:
    config = tmp_path / "probewatch.yml"
    config.write_text(
        "probes:\n"
        f"  - {{name: toggle, kind: command, period: 300ms, timeout: 200ms, command: {{argv: [test, -e, '{flag}']}}}}\n"
        "  - name: hostile\n    kind: command\n    period: 300ms\n    timeout: 200ms\n"
        f"    command: {{shell: true, argv: [{json.dumps(HOSTILE)}]}}\n")
    return config


def _cycle(url: str, flag: Path) -> None:
    wait_for(lambda: probe_up(url, "toggle") is True, 10, what="toggle up")
    wait_for(lambda: probe_up(url, "hostile") is False, 10, what="hostile down")
    flag.unlink()
    wait_for(lambda: probe_up(url, "toggle") is False, 10, what="toggle down")
    flag.touch()
    wait_for(lambda: probe_up(url, "toggle") is True, 10, what="toggle up again")


@pytest.mark.parametrize("level", ["warn", "warning"])
def test_warn_keeps_state_changes_down_and_drops_info(tmp_path: Path, level: str) -> None:
    flag, log_file = tmp_path / "flag", tmp_path / "probewatch.log"
    flag.touch()
    with serve(_toggle_config(tmp_path, flag), f"--log.level={level}", f"--log.file={log_file}") as pw:
        _cycle(pw.url, flag)
    lines = log_file.read_text().splitlines()
    assert any('msg="probe down" probe=toggle' in line for line in lines), lines
    assert not [line for line in lines if "level=info" in line or "level=debug" in line]


def test_json_format_one_object_per_line_with_control_characters_escaped(tmp_path: Path) -> None:
    flag, log_file = tmp_path / "flag", tmp_path / "probewatch.log"
    flag.touch()
    with serve(_toggle_config(tmp_path, flag), "--log.format=json", f"--log.file={log_file}") as pw:
        _cycle(pw.url, flag)
    raw = log_file.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw), raw[:2000]
    events = [json.loads(line) for line in raw.decode().splitlines()]
    assert list(events[0])[:4] == ["ts", "level", "logger", "msg"]
    assert any(e["msg"] == "probewatch started" for e in events)
    hostile = [e for e in events if e["msg"] == "probe down" and e["probe"] == "hostile"]
    assert hostile and hostile[0]["level"] == "warning" and hostile[0]["code"] == 1
    # Decoded, the JSON gives back exactly what the command printed, control characters included.
    assert "red\x1b[31m bell\x07 nul\x00 del\x7f end" in hostile[0]["detail"]
    assert "\\u001b[31m" in raw.decode() and "\\u007f" in raw.decode()
    toggle = [e["msg"] for e in events if e.get("probe") == "toggle"]
    assert toggle == ["probe down", "probe up"]


def test_logfmt_escapes_control_characters_from_a_command(tmp_path: Path) -> None:
    flag, log_file = tmp_path / "flag", tmp_path / "probewatch.log"
    flag.touch()
    with serve(_toggle_config(tmp_path, flag), f"--log.file={log_file}") as pw:
        _cycle(pw.url, flag)
    raw = log_file.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw), raw[:2000]
    line = next(x for x in raw.decode().splitlines() if 'msg="probe down" probe=hostile' in x)
    assert r'red\u001b[31m bell\u0007 nul\u0000 del\u007f end"' in line
    assert all(LOGFMT.match(x) for x in raw.decode().splitlines())


def test_escape_covers_c1_surrogates_separators_and_bidi() -> None:
    text = "a\x1b\x07\x00\x7f\x9b\ud800\u2028\u202e\u2066z \u00e9\u4e2d"
    assert logs.escape(text) == r"a\u001b\u0007\u0000\u007f\u009b\ud800\u2028\u202e\u2066z " + "\u00e9\u4e2d"
    assert logs.escape("tab\there\nnew\rret") == r"tab\there\nnew\rret"


def test_a_full_disk_falls_back_to_stderr_once_without_tracebacks(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        missing("/dev/full (a device whose writes fail with ENOSPC)")
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n  - {name: failing, kind: command, period: 200ms, timeout: 100ms,"
                      " command: {argv: ['false']}}\n")
    with serve(config, "--log.file=/dev/full", "--log.level=debug") as pw:
        for _ in range(20):
            assert requests.get(f"{pw.url}/status", timeout=10).status_code == 503
        running = pw
    stderr = running.output()
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr[:3000]
    notices = [line for line in stderr.splitlines() if "cannot write log file" in line]
    assert len(notices) == 1, stderr[:3000]
    assert notices[0].startswith("ts=") and "level=warning" in notices[0]
    assert 'file=/dev/full error="No space left on device"' in notices[0]
    # What could not be written is not lost: the record that failed and every later one follow.
    assert 'msg="probewatch started"' in stderr and 'msg="probe down" probe=failing' in stderr
    assert 'msg="probewatch stopping"' in stderr


@pytest.mark.parametrize("command", ["serve", "probe", "agent"])
def test_log_flags_are_the_same_on_every_command(command: str) -> None:
    done = subprocess.run(probewatch_argv(command, "--help"), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for flag in ("--log.level debug|info|warn|error", "--log.format {logfmt,json}", "--log.file FILE"):
        assert flag in done.stdout, (command, done.stdout)
    bad = subprocess.run(probewatch_argv(command, "--log.level=loud"), capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown log level 'loud' (use debug, info, warn, error)" in bad.stderr
