"""Bad input never bricks the exporter: API bodies, the state file, flags, hostile peers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import requests

from tests.exporter.exporter_process import serve
from tests.exporter.peers import http_peer, udp_peer
from tests.exporter.test_status_store import AUTH, get, put, registered, setup, up  # noqa: F401
from tests.support import ROOT, probewatch_argv, wait_for


def _healthy(pw) -> None:  # type: ignore[no-untyped-def]
    """Every read route and a reload still answer."""
    assert requests.get(f"{pw.url}/api/v1/probes", timeout=10).status_code == 200
    assert requests.get(f"{pw.url}/", timeout=10).status_code == 200
    assert requests.get(f"{pw.url}/metrics", timeout=10).status_code == 200
    assert pw.post("/-/reload")[0] == 200


def test_out_of_range_and_broken_api_bodies_are_400_listing_every_problem(
        tmp_path: Path, up: str) -> None:  # noqa: F811
    with serve(setup(tmp_path, up), "--web.enable-lifecycle") as pw:
        nan = put(pw, "n", b'{"kind": "tcp", "target": "%s", "period": NaN}' % up.encode())
        assert nan.status_code == 400 and "NaN is not a JSON number" in nan.json()["error"]
        several = put(pw, "s", b'{"kind": "tcp", "target": "%s", "period": 1e400, '
                               b'"labels": {"x": "\\ud800", "y": "ok"}, "failures": 0}' % up.encode())
        assert several.status_code == 400
        assert several.json()["problems"] == [
            "period: inf is not a finite number",
            "labels.x: holds a lone surrogate (\\ud800), not valid Unicode",
        ]
        tiny = put(pw, "t", {"kind": "tcp", "target": up, "period": "0.1ms", "failures": 10**6})
        assert tiny.status_code == 400
        assert tiny.json()["problems"] == ["period: 0.0001s is outside 10ms..7d",
                                           "failures: must be from 1 to 1000"]
        deep = put(pw, "d", b'{"kind": "tcp", "target": "x", "tcp": ' + b"[" * 100000
                   + b"]" * 100000 + b"}")
        assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
        nested = put(pw, "e", {"kind": "tcp", "target": up, "labels": {"a": [[[[[[[[[[[[[[[[[[[[[[
            [[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}})
        assert nested.status_code == 400
        assert "is nested more than 32 levels deep" in nested.json()["problems"][0]
        assert registered(pw) == {}
        _healthy(pw)


def test_a_state_file_that_cannot_be_loaded_whole_still_starts_with_what_it_can(
        tmp_path: Path, up: str) -> None:  # noqa: F811
    config = setup(tmp_path, up)
    state = tmp_path / "state" / "registered.json"
    state.parent.mkdir()
    # One good entry, one a lone surrogate (stored before validation existed), then cut off.
    text = ('{"version": 1, "probes": {"good": {"kind": "tcp", "target": "@UP@"}, '
            '"bad": {"kind": "tcp", "target": "@UP@", "labels": {"x": "\\ud800"}}, '
            '"cut": {"kind": "tc').replace("@UP@", up)
    state.write_text(text)
    with serve(config, "--web.enable-lifecycle") as pw:
        wait_for(lambda: pw.value("probewatch_probe_up", probe="good") == 1, what="salvaged probe up")
        assert pw.value("probewatch_probe_runs_total", probe="bad") is None
        assert get(pw, "bad").json()["scheduled"] is False
        refused = put(pw, "more", {"kind": "tcp", "target": up})
        assert refused.status_code == 503 and "is not valid JSON" in refused.json()["error"]
        _healthy(pw)
        out = pw.output()
    assert state.read_text() == text, "the broken file is kept for repair"
    assert "state file cannot be loaded whole" in out and "salvaged=2" in out
    assert "registered probe not run" in out


def test_bad_flags_exit_with_a_message(tmp_path: Path) -> None:
    key = tmp_path / "agent.key"
    key.write_text("0" * 64 + "\n")
    key.chmod(0o600)
    for argv, says in (
        (("serve", "--config.watch-interval=nan"), "'nan' is not a duration"),
        (("serve", "--config.watch-interval=1e999"), "longer than 10 years"),
        (("serve", "--web.listen-address=127.0.0.1:\uff19\uff16\uff13\uff17"), "in ASCII"),
        (("agent", f"--key-file={key}", "--max-skew=nan"), "'nan' is not a duration"),
        (("agent", f"--key-file={key}", "--listen=127.0.0.1:\uff19\uff16\uff13\uff17"), "in ASCII"),
    ):
        done = subprocess.run(probewatch_argv(*argv), capture_output=True, text=True, cwd=ROOT,
                              timeout=30)
        assert done.returncode == 2, (argv, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr)


def test_check_refuses_numbers_out_of_range_with_their_place(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n"
                      "  - {name: a, kind: tcp, target: '127.0.0.1:1', period: 0.1ms}\n"
                      "  - {name: b, kind: tcp, target: '127.0.0.1:1', period: .nan}\n"
                      "  - {name: c, kind: tcp, target: '127.0.0.1:1', period: 1e400}\n"
                      "  - {name: d, kind: tcp, target: '127.0.0.1:1', timeout: .inf}\n")
    done = subprocess.run(probewatch_argv("check", f"--config.file={config}"), capture_output=True,
                          text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{config}:2: probes[0] (a): period: 0.0001s is outside 10ms..7d",
        f"{config}:3: probes[1] (b): period: nan is not a finite number",
        # YAML reads 1e400 as text (its floats need a dot): the duration parser refuses it.
        f"{config}:4: probes[2] (c): period: '1e400' is longer than 10 years, the longest "
        "duration taken",
        f"{config}:5: probes[3] (d): timeout: inf is not a finite number",
        "4 problem(s) found",
    ]


def test_a_peers_lone_surrogate_reaches_metrics_and_the_page(tmp_path: Path) -> None:
    body = b'{"status": "Critical", "message": "disk \\ud800 full"}'
    with http_peer(body) as url:
        config = tmp_path / "probewatch.yml"
        config.write_text(f"probes:\n  - {{name: mp, kind: json, target: '{url}/', "
                          "period: 200ms, timeout: 150ms}\n")
        with serve(config, "--web.enable-lifecycle") as pw:
            wait_for(lambda: pw.value("probewatch_probe_up", probe="mp") == 0, what="a result")
            status, text, _ = pw.get("/metrics")
            assert status == 200 and 'message="disk \ufffd full"' in text
            assert requests.get(f"{pw.url}/", timeout=10).status_code == 200
            status_doc = requests.get(f"{pw.url}/status", timeout=10)
            assert status_doc.json()["probes"][0]["message"] == "disk \ufffd full"


def test_one_udp_reply_cannot_create_thousands_of_series(tmp_path: Path) -> None:
    fields = {f"f{i:04d}": i for i in range(4200)}
    reply = json.dumps({"version": "1", "operations": {"many": fields}}).encode()
    assert len(reply) < 65000
    with udp_peer(reply) as target:
        config = tmp_path / "probewatch.yml"
        config.write_text(f"probes:\n  - {{name: u, kind: udp, target: '{target}', period: 200ms,"
                          " timeout: 150ms, udp: {send: ping}}\n")
        with serve(config, "--web.enable-lifecycle") as pw:
            wait_for(lambda: pw.value("probewatch_probe_up", probe="u") == 1, what="a reply")
            samples = pw.samples()
    values = [labs for (name, labs) in samples if name == "probewatch_probe_value"]
    assert len(values) == 32
    assert samples[("probewatch_probe_value_fields_dropped",
                    frozenset({("probe", "u"), ("kind", "udp"), ("target", target)}))] == 4200 - 32


def test_a_backtracking_regex_on_a_large_body_does_not_stall_other_probes(tmp_path: Path) -> None:
    body = b"a" * (512 * 1024)
    with http_peer(body, "text/plain") as url:
        config = tmp_path / "probewatch.yml"
        config.write_text(
            "probes:\n"
            f"  - {{name: big, kind: http, target: '{url}/', period: 1s, timeout: 900ms,\n"
            "     http: {body_regex: '(?s).*x.*y.*z', body_not_regex: ['(a|aa)*b']}}\n"
            "  - {name: tick, kind: command, period: 100ms, timeout: 90ms, command: {argv: ['true']}}\n")
        with serve(config, "--web.enable-lifecycle") as pw:
            wait_for(lambda: (pw.value("probewatch_probe_runs_total", probe="big") or 0) >= 3, 20,
                     what="three runs of the big-body probe")
            ticks = pw.value("probewatch_probe_runs_total", probe="tick") or 0
            time.sleep(2)
            ticks = (pw.value("probewatch_probe_runs_total", probe="tick") or 0) - ticks
            latency = pw.value("probewatch_probe_latency_seconds", probe="big")
            info = [labs for (name, labs) in pw.samples() if name == "probewatch_probe_failure_info"]
    # 20 ticks expected in 2 s; a frozen loop (21 s per match before RE2) gives none.
    assert ticks >= 10, f"the other probe ran {ticks} times in 2 s"
    assert latency is not None and latency < 0.9
    assert any(dict(labs).get("probe") == "big" and "does not match regex" in dict(labs)["message"]
               for labs in info)
