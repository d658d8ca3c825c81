"""Every dashboard query, variables filled in, against a real Prometheus scraping a real exporter.

The exporter runs tcp, command, http and json probes to servers on loopback
(some up, some failing); Prometheus scrapes it every second and evaluates the
shipped rules (the dashboards show the rules' failure count). Each panel's
PromQL must parse and return data, as the operator would see it in Grafana.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.dashboards.test_dashboards import (
    RULES,
    data_panels,
    default_values,
    load,
    queries,
    substitute,
)
from tests.exporter.exporter_process import serve
from tests.probes.servers import closed_port
from tests.support import free_port, missing, process, require_binary, self_signed_certificate, wait_for

# What Grafana puts in for its own variables; short, as the scrape is every second.
BUILTINS = {"__rate_interval": "15s", "__range": "5m", "__interval": "1s"}

CERT_DAYS = 30
# Panels allowed to be empty, and why: only the icmp ones, and only where this
# machine cannot send pings at all (test_icmp_panels_can_be_checked_here says so).
ICMP_PANELS = frozenset({"ICMP round trip", "ICMP packet loss"})


def icmp_usable() -> bool:
    """Root (raw sockets), or a ping_group_range that holds our group (datagram sockets)."""
    if os.geteuid() == 0:
        return True
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


def must_have_data(panel: dict[str, Any]) -> bool:
    return icmp_usable() or panel["title"] not in ICMP_PANELS


class _StatusHandler(BaseHTTPRequestHandler):
    """/status: a JSON status document at Warning level; anything else: a small page."""

    def do_GET(self) -> None:
        if self.path == "/status":
            body = json.dumps({"status": "Warning", "message": "queue is long",
                               "queue_depth": 7}).encode()
            kind = "application/json"
        else:
            body, kind = b"<html>ok</html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"), days=CERT_DAYS,
                                        common_name="probewatch e2e")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them from the backlog)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield int(sock.getsockname()[1])


def probe_config(tcp_port: int, https_url: str, ca_file: Path) -> dict[str, Any]:
    probes: list[dict[str, Any]] = [
        {"name": "web", "kind": "tcp", "target": f"127.0.0.1:{tcp_port}",
         "labels": {"group": "web", "severity": "critical"}},
        {"name": "web-refused", "kind": "tcp", "target": f"127.0.0.1:{closed_port()}",
         "labels": {"group": "web", "severity": "warning"}},
        {"name": "job-ok", "kind": "command", "target": "localhost",
         "command": {"argv": ["true"]}, "labels": {"group": "batch"}},
        {"name": "job-failing", "kind": "command", "target": "localhost",
         "command": {"argv": ["false"]}, "labels": {"group": "batch"}},
        {"name": "site", "kind": "http", "target": https_url + "/",
         "http": {"tls": {"ca_file": str(ca_file)}}, "labels": {"group": "web"}},
        {"name": "queue", "kind": "json", "target": https_url + "/status",
         "json": {"tls": {"ca_file": str(ca_file)}, "values": ["queue_depth"]},
         "labels": {"group": "batch"}},
    ]
    if icmp_usable():
        probes.append({"name": "loopback-ping", "kind": "icmp", "target": "127.0.0.1",
                       "icmp": {"count": 2, "interval": "100ms"}, "labels": {"group": "network"}})
    return {"defaults": {"period": "1s", "timeout": "800ms", "failures": 2}, "probes": probes}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str, instant: bool) -> list[Any]:
        """The result of ``expr``; fails the test, quoting Prometheus, if it does not parse."""
        now = time.time()
        if instant:
            path, params = "query", {"query": expr, "time": str(now)}
        else:
            path, params = "query_range", {"query": expr, "start": str(now - 30),
                                           "end": str(now), "step": "1"}
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        error = f"{body.get('errorType')}: {body.get('error')}"
        assert body["status"] == "success", f"{expr}\n  -> {error}"
        return list(body["data"]["result"])

    def label_values(self, label: str, match: str) -> set[str]:
        resp = requests.get(f"{self.url}/api/v1/label/{label}/values",
                            params={"match[]": match}, timeout=10)
        return set(resp.json()["data"])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, listener: int,
               https_server: tuple[str, Path]) -> Iterator[tuple[Prometheus, dict[str, Any]]]:
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    config = probe_config(listener, *https_server)
    config_path = tmp / "probewatch.yml"
    config_path.write_text(yaml.safe_dump(config))
    with serve(config_path, "--log.level=debug") as exporter:  # debug: the request lines
        exporter_address = exporter.url.removeprefix("http://")
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "probewatch",
                                "static_configs": [{"targets": [exporter_address]}]}],
        }))
        port = free_port()
        argv = [binary, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        with process(argv, cwd=tmp) as proc:
            prom = Prometheus(f"http://127.0.0.1:{port}")

            def ready() -> bool:
                if proc.poll() is not None:
                    output = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"prometheus exited: {output}")
                return requests.get(f"{prom.url}/-/ready", timeout=2).status_code == 200

            wait_for(ready, 30, what="prometheus ready")
            # Enough scrapes for rates and histogram quantiles, and every probe has
            # run often enough for the failing ones to pass their threshold.
            wanted = len(config["probes"])
            wait_for(lambda: len(prom.query(
                "count_over_time(probewatch_probe_up[1m]) >= 6", instant=True)) == wanted,
                40, interval=0.5, what="six scrapes of every probe")
            wait_for(lambda: prom.query("probewatch:probe_failures:window >= 2", instant=True),
                     20, interval=0.5, what="the rules' failure count")
            # Prometheus always sends Accept-Encoding: gzip; every scrape was answered compressed.
            scrapes = re.findall(r'path=/metrics status=200 .*encoding=(\S+) .*user_agent="?Prometheus',
                                 exporter.output())
            assert scrapes and set(scrapes) == {"gzip"}, scrapes
            yield prom, config


def test_variable_queries_list_the_groups_and_probes(
        prometheus: tuple[Prometheus, dict[str, Any]]) -> None:
    prom, config = prometheus
    groups = {p["labels"]["group"] for p in config["probes"]}
    assert prom.label_values("group", "probewatch_probe_up") == groups
    web = {p["name"] for p in config["probes"] if p["labels"]["group"] == "web"}
    assert prom.label_values("probe", 'probewatch_probe_up{group=~"web"}') == web


def test_every_overview_query_returns_data(prometheus: tuple[Prometheus, dict[str, Any]]) -> None:
    prom, _ = prometheus
    board = load("probewatch-overview")
    values = {**default_values(board), **BUILTINS}
    empty = []
    for panel in filter(must_have_data, data_panels(board)):
        for target in queries(panel):
            expr = substitute(target["expr"], values)
            if not prom.query(expr, instant=target.get("instant", False)):
                empty.append(f"{panel['title']!r} {target['refId']}: {expr}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_every_probe_dashboard_query_returns_data(
        prometheus: tuple[Prometheus, dict[str, Any]]) -> None:
    """Each query has data for the probes it is about: some panels are one kind's."""
    prom, config = prometheus
    board = load("probewatch-probe")
    empty = []
    for panel in filter(must_have_data, data_panels(board)):
        for target in queries(panel):
            results = []
            for probe in config["probes"]:
                values = {**default_values(board), **BUILTINS,
                          "probe": probe["name"], "group": probe["labels"]["group"]}
                expr = substitute(target["expr"], values)
                results += prom.query(expr, instant=target.get("instant", False))
            if not results:
                empty.append(f"{panel['title']!r} {target['refId']}: {target['expr']}")
    assert empty == [], "panels without data for any probe:\n" + "\n".join(empty)


def test_failing_probes_show_with_reason(prometheus: tuple[Prometheus, dict[str, Any]]) -> None:
    prom, _ = prometheus
    board = load("probewatch-overview")
    panel = next(p for p in data_panels(board) if p["title"] == "Failing now")
    expr = substitute(queries(panel)[0]["expr"], {**default_values(board), **BUILTINS})
    rows = {r["metric"]["probe"]: r["metric"]["reason"] for r in prom.query(expr, instant=True)}
    # The json document reports Warning, and only OK counts as up by default.
    assert rows == {"web-refused": "refused", "job-failing": "unexpected_code",
                    "queue": "unexpected_response"}


def test_icmp_panels_can_be_checked_here() -> None:
    if not icmp_usable():
        missing("ICMP echo sockets for the icmp panels (run as root, or set "
                "net.ipv4.ping_group_range to include this user's group)")
