"""The command line as a user runs it: probe, kinds, check, and bad flags."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.exporter.exporter_process import serve
from tests.probes.servers import TcpServer, closed_port
from tests.support import ROOT, probewatch_argv, wait_for


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(probewatch_argv(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_probe_prints_result_and_samples_and_exits_by_state(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: conn.sendall(b"hello\n") or b"")
    config = tmp_path / "p.yml"
    config.write_text(f"""
probes:
  - {{name: up, kind: tcp, target: "{server.target}", labels: {{group: g}}, tcp: {{expect: hello}}}}
  - {{name: down, kind: tcp, target: "127.0.0.1:{closed_port()}", active: false}}
""")
    try:
        up = run("probe", "up", f"--config.file={config}")
        down = run("probe", "down", f"--config.file={config}")
    finally:
        server.close()
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert lines[0] == f"probe:   up (tcp {server.target})"
    assert lines[1:3] == ["result:  up", "code:    0"]
    assert f'  probewatch_probe_up{{probe="up",kind="tcp",target="{server.target}",group="g"}} 1' in lines
    assert down.returncode == 1
    assert "[inactive]" in down.stdout
    assert "reason:  refused" in down.stdout
    assert 'probewatch_probe_failure_info{probe="down"' in down.stdout


def test_probe_unknown_name_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "p.yml"
    config.write_text("probes:\n  - {name: a, kind: command, command: {argv: ['true']}}\n")
    proc = run("probe", "b", f"--config.file={config}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"probewatch: no probe named 'b' in {config} (probes: a)"


def test_kinds_lists_every_kind_with_options() -> None:
    proc = run("kinds")
    assert proc.returncode == 0
    out = proc.stdout
    for kind in ("command", "http", "icmp", "json", "sip", "tcp", "udp"):
        assert f"\n{kind}\n" in "\n" + out
    assert "options (tcp: block):" in out
    assert "      ok_codes: list of integers; default [0]\n          accepted exit codes" in out
    assert "      interval: duration; default 1s\n" in out
    assert "      expect_status: status codes: 200, 2xx, 200-399, or a list of them; default 200-399\n" in out
    assert "      tls.ca_file: string; default \"\"\n" in out
    for python in ("TlsOptions(", "Any", "None", "a list of integer", "default 1.0"):
        assert python not in out, python


def test_kinds_of_one_kind_and_an_unknown_one() -> None:
    tcp = run("kinds", "tcp")
    assert tcp.returncode == 0, tcp.stderr
    assert tcp.stdout.startswith("tcp\n") and "\ncommand\n" not in tcp.stdout
    assert "      send: string; default \"\"\n          written after connecting" in tcp.stdout
    assert "      tls.server_name: string; default the target's host\n" in tcp.stdout
    two = run("kinds", "udp", "command")
    assert two.returncode == 0 and two.stdout.startswith("udp\n") and "\ncommand\n" in two.stdout
    bad = run("kinds", "carrier-pigeon")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("probewatch kinds: unknown kind 'carrier-pigeon'; kinds: command, http, icmp,")
    assert "unknown kind 'ping' (did you mean icmp?)" in run("kinds", "ping").stderr
    close = run("kinds", "tpc")
    assert "unknown kind 'tpc' (did you mean tcp?)" in close.stderr and close.returncode == 2


def test_check_accepts_the_bundled_default_config() -> None:
    proc = run("check", "--config.file=exporter/default.yml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exporter/default.yml: OK, 5 probes (4 active)")


def test_bad_flags_exit_2_without_traceback() -> None:
    for args in (("serve", "--web.listen-address=nowhere"), ("serve", "--shard=3/2"),
                 ("serve", "--config.watch-interval=soon"), ("frobnicate",)):
        proc = run(*args)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr
        assert "error:" in proc.stderr


@pytest.mark.parametrize("args", [("probe", "up"), ("kinds",)])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    config = tmp_path / "p.yml"
    config.write_text("probes:\n  - {name: up, kind: command, command: {argv: ['true']}}\n")
    flags = [f"--config.file={config}"] if args[0] == "probe" else []
    proc = subprocess.Popen(probewatch_argv(*args, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line, as when `head` has had enough
    stderr = proc.stderr.read()
    assert proc.wait(60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr
    piped = subprocess.run(" ".join(shlex.quote(a) for a in probewatch_argv(*args, *flags)) + " | head -n 1",
                           shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert piped.stdout.count("\n") == 1 and piped.stderr == ""


def test_check_without_a_config_file_names_the_flag(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in ("check", "serve", "probe"):
        argv = probewatch_argv(command, *(["x"] if command == "probe" else []))
        done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        assert done.returncode == 2
        assert done.stderr == (f"probewatch {command}: no config file: there is no probewatch.yml in {tmp_path}; "
                               "name one with --config.file=FILE\n")
    gone = run("check", f"--config.file={tmp_path}/nowhere.yml")
    assert gone.returncode == 2
    assert gone.stderr == (f"probewatch check: cannot read --config.file={tmp_path}/nowhere.yml: "
                           "No such file or directory\n")
    assert ":0:" not in gone.stderr


def test_the_bundled_config_probes_the_exporter_on_whatever_port_it_listens(tmp_path: Path) -> None:
    config = tmp_path / "default.yml"
    config.write_text((ROOT / "exporter" / "default.yml").read_text())
    assert "9637" not in config.read_text().split("probes:")[1]
    with serve(config) as pw:  # a free port, never 9637
        port = pw.url.rsplit(":", 1)[1]
        assert port != "9637"
        for name in ("self-tcp", "self-metrics", "local-shell"):
            wait_for(lambda n=name: pw.value("probewatch_probe_up", probe=n) == 1.0, timeout=45,
                     what=f"{name} up")
        assert pw.value("probewatch_probe_up", probe="self-metrics", target=f"127.0.0.1:{port}") == 1.0


def test_probe_output_escapes_control_characters_from_the_peer(tmp_path: Path) -> None:
    config = tmp_path / "p.yml"
    config.write_text("probes:\n  - name: loud\n    kind: command\n    command:\n"
                      "      shell: true\n      argv: [\"printf '\\\\033]0;pwned\\\\007\\\\033[2J'; exit 1\"]\n")
    done = run("probe", "loud", f"--config.file={config}")
    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert r"message: exit code 1 (accepted: 0): \u001b]0;pwned\u0007\u001b[2J" in done.stdout
