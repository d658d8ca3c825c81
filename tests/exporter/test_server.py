"""The real exporter process: /metrics over HTTP, health, reloads, signals, file watching."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.exporter.exporter_process import serve
from tests.probes.servers import TcpServer, closed_port
from tests.support import wait_for

CONFIG = """
defaults: {{period: 300ms, timeout: 200ms, labels: {{group: test}}}}
probes:
  - {{name: listening, kind: tcp, target: "{up}"}}
  - {{name: closed, kind: tcp, target: "127.0.0.1:{closed}", failures: 1}}
  - {{name: ok-cmd, kind: command, command: {{argv: ["true"]}}}}
  - {{name: resting, kind: command, active: false, command: {{argv: ["true"]}}}}
"""


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_scrape_shows_each_probe_and_the_exporters_own_series(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    config.write_text(CONFIG.format(up=server.target, closed=closed_port()))
    try:
        with serve(config) as pw:
            wait_for(lambda: pw.value("probewatch_probe_up", probe="closed") == 0, what="closed down")
            wait_for(lambda: pw.value("probewatch_probe_up", probe="listening") == 1, what="up")
            assert pw.value("probewatch_probe_up", probe="ok-cmd", kind="command", group="test") == 1
            assert pw.value("probewatch_probe_return_code", probe="closed") == -1
            assert pw.value("probewatch_probe_failure_info", probe="closed", reason="refused") == 1
            assert pw.value("probewatch_probes", state="active") == 3
            assert pw.value("probewatch_probes", state="inactive") == 1
            assert pw.value("probewatch_probe_runs_total", probe="resting") is None
            assert pw.value("probewatch_config_last_reload_successful") == 1
            assert pw.value("probewatch_scheduler_lag_seconds_count") > 0
            assert pw.get("/-/healthy")[0] == 200
            status, body, headers = pw.get(
                "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
            assert status == 200 and body.endswith("# EOF\n")
            assert headers["Content-Type"].startswith("application/openmetrics-text")
    finally:
        server.close()


def test_reload_keeps_counters_of_unchanged_probes_and_drops_removed_ones(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    closed = closed_port()
    config.write_text(CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed))
    with serve(config, "--config.watch-interval=0", "--web.enable-lifecycle") as pw:
        wait_for(lambda: (pw.value("probewatch_probe_runs_total", probe="ok-cmd") or 0) >= 5,
                 what="a few runs")
        before = pw.value("probewatch_probe_runs_total", probe="ok-cmd")
        write(config, CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed)
              .replace(f'  - {{name: listening, kind: tcp, target: "127.0.0.1:{closed}"}}\n', ""))
        assert pw.post("/-/reload") == (200, "config reloaded\n")
        assert pw.value("probewatch_probe_runs_total", probe="ok-cmd") >= before
        assert pw.value("probewatch_probe_runs_total", probe="listening") is None
        assert pw.value("probewatch_probe_up", probe="listening") is None
        assert pw.value("probewatch_probes", state="active") == 2


def test_invalid_reload_keeps_the_old_config_running(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    closed = closed_port()
    config.write_text(CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed))
    with serve(config, "--config.watch-interval=0", "--web.enable-lifecycle") as pw:
        write(config, "probes:\n  - {name: x, kind: nope}\n")
        status, body = pw.post("/-/reload")
        assert status == 400
        assert f"{config}:2: probes[0] (x): kind: unknown kind 'nope'" in body
        assert pw.value("probewatch_config_last_reload_successful") == 0
        runs = pw.value("probewatch_probe_runs_total", probe="ok-cmd")
        wait_for(lambda: pw.value("probewatch_probe_runs_total", probe="ok-cmd") > runs,
                 what="old probes still running")


def test_sighup_and_file_change_reload(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    closed = closed_port()
    config.write_text(CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed))
    with serve(config, "--config.watch-interval=200ms") as pw:
        write(config, CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed).replace("ok-cmd", "renamed"))
        wait_for(lambda: pw.value("probewatch_probe_runs_total", probe="renamed") is not None,
                 what="watched file reloaded")
        assert pw.value("probewatch_probe_runs_total", probe="ok-cmd") is None

    with serve(config, "--config.watch-interval=0") as pw:
        write(config, CONFIG.format(up=f"127.0.0.1:{closed}", closed=closed).replace("ok-cmd", "hup"))
        pw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: pw.value("probewatch_probe_runs_total", probe="hup") is not None,
                 what="SIGHUP reloaded")


def test_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text('probes:\n  - {name: s, kind: command, period: 10s, timeout: 9s, '
                      'command: {argv: [sleep, "8"]}}\n')
    with serve(config) as pw:
        time.sleep(0.5)
        started = time.monotonic()
        pw.proc.send_signal(signal.SIGTERM)
        assert pw.proc.wait(10) == 0
        assert time.monotonic() - started < 4


def test_bad_config_at_start_exits_2_without_traceback(tmp_path: Path) -> None:
    import subprocess

    from tests.support import ROOT, probewatch_argv

    config = tmp_path / "bad.yml"
    config.write_text("probes:\n  - {name: x, kind: tcp, target: nowhere}\n")
    proc = subprocess.run(probewatch_argv("serve", f"--config.file={config}",
                                          "--web.listen-address=127.0.0.1:0"),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{config}:2: probes[0] (x): target: 'nowhere' is not HOST:PORT" in proc.stderr
