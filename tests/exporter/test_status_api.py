"""GET /status and /api/v1/probes against the real exporter (exporter/status/api.py).

Probes are tcp probes against local sockets, command probes (true/false) and
json probes against a local Megaphone-style server, all with short periods.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import ProbeSpec
from exporter.probe_state import ProbeState
from exporter.scheduler import phase
from exporter.status.collate import Selection, collate, level_of
from probes.base import Result
from tests.exporter.exporter_process import Running, serve
from tests.probes.servers import TcpServer, closed_port
from tests.support import missing, wait_for

MIXED = """
defaults: {{period: 1s, timeout: 500ms}}
probes:
  - {{name: web-a, kind: tcp, target: "{up}", labels: {{group: web, severity: critical}}}}
  - {{name: web-b, kind: command, command: {{argv: ["true"]}}, labels: {{group: web}}}}
  - {{name: db-a, kind: tcp, target: "127.0.0.1:{closed}", labels: {{group: db, severity: warning}}}}
  - {{name: db-b, kind: command, command: {{argv: ["false"]}}, labels: {{group: db}}}}
  - {{name: resting, kind: tcp, target: "{up}", active: false, labels: {{group: web}}}}
"""


def status(pw: Running, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = requests.get(f"{pw.url}/status{query}", timeout=10)
    return resp.status_code, resp.json()


def probe(pw: Running, name: str) -> dict[str, Any]:
    resp = requests.get(f"{pw.url}/api/v1/probes/{name}", timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def all_ran(pw: Running) -> bool:
    listed = requests.get(f"{pw.url}/api/v1/probes", timeout=10).json()["probes"]
    return all(p["last_run"] for p in listed if p["active"])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One exporter: web all up, db one Warning (severity) and one Critical, one inactive."""
    tmp = tmp_path_factory.mktemp("mixed")
    server = TcpServer(lambda conn: b"")
    config = tmp / "probewatch.yml"
    config.write_text(MIXED.format(up=server.target, closed=closed_port()))
    try:
        with serve(config, f"--log.file={tmp / 'probewatch.log'}") as pw:
            wait_for(lambda: all_ran(pw), 10, what="every active probe to run once")
            yield pw
    finally:
        server.close()


def test_all_up_answers_200_ok_with_one_entry_per_probe(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    config.write_text(
        "defaults: {period: 1s, timeout: 500ms}\nprobes:\n"
        f"  - {{name: web, kind: tcp, target: '{server.target}'}}\n"
        "  - {name: cmd, kind: command, command: {argv: ['true']}}\n")
    try:
        with serve(config) as pw:
            wait_for(lambda: all_ran(pw), 10, what="both probes to run")
            code, body = status(pw)
            head = requests.head(f"{pw.url}/status", timeout=10)
    finally:
        server.close()
    assert code == 200
    assert body["status"] == "OK"
    assert body["message"] == "all 2 probes OK"
    assert [(p["name"], p["status"], p["up"]) for p in body["probes"]] == [
        ("cmd", "OK", True), ("web", "OK", True)]
    date = dt.datetime.fromisoformat(body["date"])
    assert date.tzinfo is not None, "the date carries its zone"
    assert abs(date.timestamp() - time.time()) < 60
    assert head.status_code == 200 and head.content == b""


def test_one_down_answers_503_and_the_most_critical_wins(mixed: Running) -> None:
    code, body = status(mixed)
    assert code == 503
    assert body["status"] == "Critical"
    assert [(p["name"], p["status"]) for p in body["probes"]] == [
        ("db-a", "Warning"), ("db-b", "Critical"), ("web-a", "OK"), ("web-b", "OK")]
    assert body["message"] == ("db-a:Warning:" + next(p["message"] for p in body["probes"]
                                                      if p["name"] == "db-a")
                               + "; db-b:Critical:exit code 1 (accepted: 0)")
    assert "refused" in body["message"]
    assert requests.head(f"{mixed.url}/status", timeout=10).status_code == 503


@pytest.mark.parametrize(("query", "code", "level", "names"), [
    ("?group=web", 200, "OK", ["web-a", "web-b"]),
    ("?group=db", 503, "Critical", ["db-a", "db-b"]),
    ("?group=db&label=severity:warning", 503, "Warning", ["db-a"]),
    ("?label=group:web&label=severity:critical", 200, "OK", ["web-a"]),
    ("?group=web&group=db&label=severity:critical", 200, "OK", ["web-a"]),
    ("?probe=web-b&probe=db-a", 503, "Warning", ["db-a", "web-b"]),
    ("?probe=web-b", 200, "OK", ["web-b"]),
    ("?probe=no-such-probe", 503, "Unknown", []),
    ("?probe=resting", 503, "Unknown", []),  # inactive probes are never selected
])
def test_selection_filters_the_probes_that_count(
        mixed: Running, query: str, code: int, level: str, names: list[str]) -> None:
    got_code, body = status(mixed, query)
    assert (got_code, body["status"]) == (code, level)
    assert [p["name"] for p in body["probes"]] == names
    if not names:
        assert body["message"] == "no active probe matches the selection"
    assert requests.head(f"{mixed.url}/status{query}", timeout=10).status_code == code


@pytest.mark.parametrize(("query", "says"), [
    ("?grup=web", "unknown query parameter 'grup'"),
    ("?label=severity", "label='severity' must be key:value"),
])
def test_a_mistyped_selection_is_400_not_a_silent_all(mixed: Running, query: str, says: str) -> None:
    code, body = status(mixed, query)
    assert code == 400
    assert says in body["error"]


def test_options_lists_the_allowed_methods(mixed: Running) -> None:
    # OPTIONS /status answers as GET does (Cmdchk, HAProxy's default httpchk): db is down.
    resp = requests.options(f"{mixed.url}/status", timeout=10)
    assert resp.status_code == 503 and resp.json()["status"] == "Critical"
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
    web = requests.options(f"{mixed.url}/status?group=web", timeout=10)
    assert web.status_code == 200 and web.json()["status"] == "OK"
    resp = requests.options(f"{mixed.url}/api/v1/probes/web-a", timeout=10)
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"


def test_nothing_run_yet_is_unknown_and_503(tmp_path: Path) -> None:
    # A name whose slot is at least 10 minutes after start; its early first run lasts 50s.
    name = next(f"pending-{i}" for i in range(1000) if phase(f"pending-{i}", 3600) > 600)
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n"
                      f"  - {{name: {name}, kind: command, period: 1h, timeout: 50s, "
                      "command: {argv: ['sleep', '60']}}\n")
    with serve(config) as pw:
        code, body = status(pw)
        detail = probe(pw, name)
    assert (code, body["status"]) == (503, "Unknown")
    assert body["message"] == f"{name}:Unknown:not run yet"
    assert body["probes"][0]["up"] is None and body["probes"][0]["last_run"] is None
    next_run = dt.datetime.fromisoformat(detail["next_run"]).timestamp()
    assert next_run - time.time() > 500
    assert detail["runs"] == [] and detail["runs_total"] == 0


def test_nothing_configured_is_unknown_and_503(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("probes: []\n")
    with serve(config) as pw:
        code, body = status(pw)
    assert (code, body["status"], body["probes"]) == (503, "Unknown", [])


def test_probe_list_and_detail_show_definition_result_times_and_runs(mixed: Running) -> None:
    listed = requests.get(f"{mixed.url}/api/v1/probes", timeout=10).json()["probes"]
    assert [(p["name"], p["active"], p["source"]) for p in listed] == [
        ("db-a", True, "config"), ("db-b", True, "config"), ("resting", False, "config"),
        ("web-a", True, "config"), ("web-b", True, "config")]
    grouped = requests.get(f"{mixed.url}/api/v1/probes?group=db", timeout=10).json()["probes"]
    assert [p["name"] for p in grouped] == ["db-a", "db-b"]

    wait_for(lambda: probe(mixed, "db-b")["runs_total"] >= 2, 10, what="two runs of db-b")
    db_b = probe(mixed, "db-b")
    assert db_b["definition"] == {
        "name": "db-b", "kind": "command", "target": "localhost", "period": "1s",
        "timeout": "500ms", "active": True, "labels": {"group": "db"}, "failures": 3,
        "command": db_b["definition"]["command"]}
    assert db_b["definition"]["command"]["argv"] == ["false"]
    assert (db_b["status"], db_b["up"], db_b["code"], db_b["reason"]) == (
        "Critical", False, 1, "unexpected_code")
    assert db_b["message"] == "exit code 1 (accepted: 0)"
    assert 0 < db_b["latency_seconds"] < 0.5
    last_run = dt.datetime.fromisoformat(db_b["last_run"]).timestamp()
    next_run = dt.datetime.fromisoformat(db_b["next_run"]).timestamp()
    assert 0 < next_run - last_run <= 1.5
    runs = db_b["runs"]
    assert 2 <= len(runs) <= db_b["runs_total"]
    assert all(not r["up"] and r["code"] == 1 for r in runs)
    starts = [dt.datetime.fromisoformat(r["started"]).timestamp() for r in runs]
    assert starts == sorted(starts)

    resting = probe(mixed, "resting")
    assert (resting["active"], resting["next_run"], resting["runs"]) == (False, None, [])
    missing_one = requests.get(f"{mixed.url}/api/v1/probes/no-such-probe", timeout=10)
    assert missing_one.status_code == 404
    assert missing_one.json() == {"error": "no probe named 'no-such-probe'"}


def test_detail_keeps_the_last_100_runs(tmp_path: Path) -> None:
    server = TcpServer(lambda conn: b"")
    config = tmp_path / "probewatch.yml"
    config.write_text(f"probes:\n  - {{name: fast, kind: tcp, target: '{server.target}', "
                      "period: 20ms, timeout: 15ms}\n")
    try:
        with serve(config, f"--log.file={tmp_path / 'log'}") as pw:
            wait_for(lambda: probe(pw, "fast")["runs_total"] > 110, 15, what="more than 110 runs")
            fast = probe(pw, "fast")
    finally:
        server.close()
    assert len(fast["runs"]) == 100
    assert fast["runs_total"] > 110
    newest = fast["runs"][-1]
    ended = dt.datetime.fromisoformat(newest["started"]).timestamp() + newest["latency_seconds"]
    assert abs(ended - dt.datetime.fromisoformat(fast["last_run"]).timestamp()) <= 1


# -- json-kind levels ---------------------------------------------------------

class _Megaphone(BaseHTTPRequestHandler):
    """/LEVEL answers a Megaphone status document with that level."""

    def do_GET(self) -> None:
        level = self.path.strip("/")
        body = json.dumps({"status": level, "message": f"{level} from megaphone",
                           "version": "1.0.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


JSON_PROBES = """
defaults: {{period: 1s, timeout: 500ms}}
probes:
  - {{name: j-ok, kind: json, target: "{base}/OK"}}
  - {{name: j-unknown, kind: json, target: "{base}/unknown"}}
  - {{name: j-warning, kind: json, target: "{base}/Warning"}}
  - {{name: j-critical, kind: json, target: "{base}/CRITICAL"}}
  - {{name: j-warning-ok, kind: json, target: "{base}/Warning", json: {{ok_levels: [OK, Warning]}}}}
  - {{name: j-amber, kind: json, target: "{base}/amber",
      json: {{levels: {{green: 0, amber: 2, red: 3}}, ok_levels: [green]}}}}
"""


def test_json_levels_are_taken_as_they_are(tmp_path: Path) -> None:
    try:
        from probes.json_status import JsonProbe  # noqa: F401
    except ImportError:
        missing("the json probe kind (probes/json_status.py)")
    megaphone = ThreadingHTTPServer(("127.0.0.1", 0), _Megaphone)
    threading.Thread(target=megaphone.serve_forever, daemon=True).start()
    config = tmp_path / "probewatch.yml"
    config.write_text(JSON_PROBES.format(base=f"http://127.0.0.1:{megaphone.server_address[1]}"))
    try:
        with serve(config) as pw:
            wait_for(lambda: all_ran(pw), 10, what="every json probe to run")
            code, body = status(pw)
            accepted = status(pw, "?probe=j-warning-ok")
            unknown_only = status(pw, "?probe=j-unknown&probe=j-ok")
    finally:
        megaphone.shutdown()
        megaphone.server_close()
    levels = {p["name"]: (p["status"], p["up"]) for p in body["probes"]}
    assert levels == {
        "j-ok": ("OK", True), "j-unknown": ("Unknown", False), "j-warning": ("Warning", False),
        "j-critical": ("Critical", False), "j-warning-ok": ("Warning", True),
        "j-amber": ("Warning", False),  # its own table: amber is 2 on the 0-3 scale
    }
    assert (code, body["status"]) == (503, "Critical")
    assert "j-critical:Critical:CRITICAL from megaphone" in body["message"].split("; ")
    assert "j-ok" not in body["message"]
    # Up by its ok_levels, so a load balancer keeps it; the level still says Warning.
    assert (accepted[0], accepted[1]["status"]) == (200, "Warning")
    assert accepted[1]["message"] == "j-warning-ok:Warning:Warning from megaphone"
    assert (unknown_only[0], unknown_only[1]["status"]) == (503, "Unknown")


# -- level mapping, without a process -----------------------------------------

def _state(name: str, labels: dict[str, str], result: Result | None) -> ProbeState:
    spec = ProbeSpec(name=name, kind="tcp", target="127.0.0.1:1", period=1.0, timeout=0.5,
                     active=True, labels=tuple(sorted(labels.items())), failures=3, options=None)
    state = ProbeState(spec)
    if result is not None:
        state.record(result, 0.01, time.time())
    return state


@pytest.mark.parametrize(("labels", "result", "level"), [
    ({}, None, "Unknown"),
    ({}, Result.ok(), "OK"),
    ({}, Result.fail("refused", "no"), "Critical"),
    ({"severity": "critical"}, Result.fail("refused", "no"), "Critical"),
    ({"severity": "page"}, Result.fail("refused", "no"), "Critical"),
    ({"severity": "warning"}, Result.fail("refused", "no"), "Warning"),
    ({"severity": "Warn"}, Result.fail("refused", "no"), "Warning"),
    ({"severity": "info"}, Result.fail("refused", "no"), "Warning"),
    ({"severity": "critical"}, Result.fail("unexpected_response", "w", level=2,
                                           level_name="Warning"), "Warning"),
    ({}, Result.ok(level=2, level_name="Warning"), "Warning"),
    ({}, Result.fail("unexpected_response", "u", level=1, level_name="unknown"), "Unknown"),
    ({}, Result.fail("unexpected_response", "r", level=3, level_name="red"), "Critical"),
    ({}, Result.fail("unexpected_response", "x", level=9, level_name="weird"), "Critical"),
])
def test_level_of_a_probe(labels: dict[str, str], result: Result | None, level: str) -> None:
    assert level_of(_state("p", labels, result)) == level


def test_collate_orders_levels_as_megaphone_does() -> None:
    ok = _state("a", {}, Result.ok())
    unknown = _state("b", {}, None)
    warning = _state("c", {"severity": "warning"}, Result.fail("timeout", "slow"))
    critical = _state("d", {}, Result.fail("refused", "gone"))
    everything = Selection()
    assert collate([ok], everything).status == "OK"
    assert collate([ok, unknown], everything).status == "Unknown"
    assert collate([ok, unknown, warning], everything).status == "Warning"
    assert collate([critical, ok, unknown, warning], everything).status == "Critical"
    result = collate([critical, ok, unknown, warning], everything)
    assert result.message == "b:Unknown:not run yet; c:Warning:slow; d:Critical:gone"
    assert not result.healthy
    assert collate([ok], everything).healthy
