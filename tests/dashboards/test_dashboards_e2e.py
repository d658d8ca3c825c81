"""Every dashboard query, variables filled in, against a real Prometheus scraping real exporters.

Three exporters run on loopback, as an operator's Prometheus would see them:

- ``main`` (job probewatch) runs tcp, command, http, json and icmp probes to
  servers on loopback, some up, some failing;
- ``replica`` (job probewatch too: an HA replica) runs two of main's probes
  under the same names and labels, and sees both failing where main sees them up;
- ``staging`` (job staging, namespace staging) is another deployment with a
  probe named ``web`` like main's, failing where main's is up.

Prometheus scrapes them every second and evaluates the shipped rules (the
dashboards show the rules' failure count). Each panel's PromQL must parse and
return data, and the headline panels must show what the operator expects: the
availability of each probe, a probe failing on one replica shown failing, and
the two deployments' ``web`` kept apart.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.dashboards.test_dashboards import (
    PENDING_SERIES,
    RULES,
    data_panels,
    default_values,
    load,
    pending,
    queries,
    substitute,
    variables,
)
from tests.exporter.exporter_process import serve
from tests.probes.servers import closed_port
from tests.support import free_port, missing, process, require_binary, self_signed_certificate, wait_for

# What Grafana puts in for its own variables; short, as the scrape is every second.
BUILTINS = {"__rate_interval": "15s", "__range": "5m", "__interval": "1s"}

CERT_DAYS = 30
# Panels allowed to be empty, and why: only the icmp ones, and only where this
# machine cannot send pings at all (test_icmp_panels_show_the_ping_probe says so).
ICMP_PANELS = frozenset({"ICMP round trip", "ICMP packet loss"})
# The numbers the json probe reads, one per unit group of the Reported values panels.
STATUS_VALUES = {"queue_depth": 7, "cache_bytes": 1048576, "oldest_seconds": 12.5,
                 "hit_ratio": 0.93}
VALUE_PANELS = {"Reported values: bytes": {"cache_bytes"},
                "Reported values: seconds": {"oldest_seconds"},
                "Reported values: ratios": {"hit_ratio"},
                "Reported values: other": {"queue_depth"}}
MAIN_JOB, STAGING_JOB = "probewatch", "staging"


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
                               **STATUS_VALUES}).encode()
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
    """main: every kind, some failing, and two probes its replica sees failing."""
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
         "json": {"tls": {"ca_file": str(ca_file)}, "values": sorted(STATUS_VALUES)},
         "labels": {"group": "batch"}},
        *ha_probes(replica=False),
    ]
    if icmp_usable():
        probes.append({"name": "loopback-ping", "kind": "icmp", "target": "127.0.0.1",
                       "icmp": {"count": 2, "interval": "100ms"}, "labels": {"group": "network"}})
    return with_defaults(probes)


def ha_probes(replica: bool) -> list[dict[str, Any]]:
    """Same names, kinds, targets and labels on both replicas; up on main, failing on the replica.

    ha-exit fails with exit code 1 (above main's 0), ha-timeout with no code (-1,
    below main's 0), so a panel showing the highest or the lowest code of the
    replicas cannot pass for one that shows the failing replica's.
    """
    return [
        {"name": "ha-exit", "kind": "command", "target": "localhost",
         "command": {"argv": ["false" if replica else "true"]}, "labels": {"group": "ha"}},
        {"name": "ha-timeout", "kind": "command", "target": "localhost",
         "command": {"argv": ["sleep", "5"] if replica else ["true"]}, "labels": {"group": "ha"}},
    ]


def staging_config(closed: int) -> dict[str, Any]:
    """Another deployment: a probe named like main's web, failing there."""
    return with_defaults([{"name": "web", "kind": "tcp", "target": f"127.0.0.1:{closed}",
                           "labels": {"group": "web", "severity": "critical"}}])


def with_defaults(probes: list[dict[str, Any]]) -> dict[str, Any]:
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
        body = resp.json()
        assert body["status"] == "success", f"{label} of {match}: {body}"
        return set(body["data"])


class Setup:
    """What the fixture started: Prometheus, each exporter's config and scrape address."""

    def __init__(self, prom: Prometheus, configs: dict[str, dict[str, Any]],
                 addresses: dict[str, str]) -> None:
        self.prom, self.configs, self.addresses = prom, configs, addresses
        self.scraped = {name for s in prom.query('{__name__=~"probewatch_.+"}', instant=True)
                        if (name := s["metric"]["__name__"])}

    def pending(self, exprs: str) -> list[str]:
        """Names of PENDING_SERIES the expressions read that no exporter exports yet."""
        return [n for n in PENDING_SERIES if n in exprs and n not in self.scraped]

    def probes(self) -> list[tuple[str, dict[str, Any]]]:
        """(job, probe) for every probe of every exporter, replicas' probes once."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for exporter, config in self.configs.items():
            job = STAGING_JOB if exporter == "staging" else MAIN_JOB
            for probe in config["probes"]:
                seen.setdefault((job, probe["name"]), probe)
        return [(job, probe) for (job, _), probe in seen.items()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, listener: int,
          https_server: tuple[str, Path]) -> Iterator[Setup]:
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    configs = {"main": probe_config(listener, *https_server),
               "replica": with_defaults(ha_probes(replica=True)),
               "staging": staging_config(closed_port())}
    with ExitStack() as stack:
        addresses, exporters = {}, []
        for name, config in configs.items():
            path = tmp / f"{name}.yml"
            path.write_text(yaml.safe_dump(config))
            exporter = stack.enter_context(serve(path, "--log.level=debug"))  # debug: the request lines
            exporters.append(exporter)
            addresses[name] = exporter.url.removeprefix("http://")
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": MAIN_JOB, "static_configs": [
                    {"targets": [addresses["main"], addresses["replica"]]}]},
                # As the ServiceMonitor's scrapes carry it in Kubernetes.
                {"job_name": STAGING_JOB, "static_configs": [
                    {"targets": [addresses["staging"]], "labels": {"namespace": "staging"}}]},
            ],
        }))
        port = free_port()
        argv = [binary, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        proc = stack.enter_context(process(argv, cwd=tmp))
        prom = Prometheus(f"http://127.0.0.1:{port}")

        def ready() -> bool:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"prometheus exited: {output}")
            return requests.get(f"{prom.url}/-/ready", timeout=2).status_code == 200

        wait_for(ready, 30, what="prometheus ready")
        # Enough scrapes for rates and histogram quantiles, and every probe has
        # run often enough for the failing ones to pass their threshold.
        wanted = sum(len(c["probes"]) for c in configs.values())
        wait_for(lambda: len(prom.query(
            "count_over_time(probewatch_probe_up[1m]) >= 6", instant=True)) == wanted,
            40, interval=0.5, what="six scrapes of every probe")
        wait_for(lambda: prom.query("probewatch:probe_failures:window >= 2", instant=True),
                 20, interval=0.5, what="the rules' failure count")
        # Prometheus always sends Accept-Encoding: gzip; every scrape was answered compressed.
        for exporter in exporters:
            scrapes = re.findall(r'path=/metrics status=200 .*encoding=(\S+) .*user_agent="?Prometheus',
                                 exporter.output())
            assert scrapes and set(scrapes) == {"gzip"}, scrapes
        yield Setup(prom, configs, addresses)


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in data_panels(board) if p["title"] == title)


def evaluate(prom: Prometheus, board: dict[str, Any], title: str, ref: str = "A",
             **chosen: str) -> dict[tuple[str, ...], float]:
    """A panel's query now, the variables at their defaults but for ``chosen``.

    Evaluated as an instant query (where a graph's range query ends), keyed by
    the values of the labels the query keeps (job, probe, instance...).
    """
    target = next(t for t in queries(panel(board, title)) if t["refId"] == ref)
    values = {**default_values(board), **BUILTINS, **chosen}
    out: dict[tuple[str, ...], float] = {}
    for series in prom.query(substitute(target["expr"], values), instant=True):
        labels = series["metric"]
        key = tuple(labels[k] for k in ("job", "probe", "instance", "field", "stat", "cause")
                    if k in labels)
        assert key not in out, f"{title!r}: two series for {key}"
        out[key] = float(series["value"][1])
    return out


def test_variable_queries_list_what_each_selection_leaves(setup: Setup) -> None:
    """Each variable's own query, the ones before it at their defaults or at a choice."""
    prom = setup.prom
    for name in ("probewatch-overview", "probewatch-probe"):
        board = load(name)

        def values_of(var: str, board: dict[str, Any] = board, **chosen: str) -> set[str]:
            definition = variables(board)[var]["definition"]
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
            assert match, definition
            selector = substitute(match.group(1), {**default_values(board), **chosen})
            return prom.label_values(match.group(2), selector)

        assert values_of("namespace") == {"staging"}
        assert values_of("job") == {MAIN_JOB, STAGING_JOB}
        assert values_of("job", namespace="staging") == {STAGING_JOB}
        assert values_of("instance", job=MAIN_JOB) == {setup.addresses["main"],
                                                       setup.addresses["replica"]}
        groups = {p["labels"]["group"] for _, p in setup.probes()}
        assert values_of("group") == groups
        assert values_of("group", job=STAGING_JOB) == {"web"}
        web = {p["name"] for job, p in setup.probes() if p["labels"]["group"] == "web"}
        assert values_of("probe", group="web") == web
        assert values_of("probe", instance=setup.addresses["replica"]) == {
            "ha-exit", "ha-timeout"}


def test_every_overview_query_returns_data(setup: Setup) -> None:
    prom = setup.prom
    board = load("probewatch-overview")
    values = {**default_values(board), **BUILTINS}
    empty, waiting = [], set()
    for p in filter(must_have_data, data_panels(board)):
        for target in queries(p):
            expr = substitute(target["expr"], values)
            if not prom.query(expr, instant=target.get("instant", False)):
                if setup.pending(expr):
                    waiting.update(setup.pending(expr))
                else:
                    empty.append(f"{p['title']!r} {target['refId']}: {expr}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    for name in sorted(waiting):
        pending(name, "exported by the exporter")


def test_skipped_runs_show_each_cause_per_exporter(setup: Setup) -> None:
    """Nothing is skipped here: both causes at 0 for every exporter, and 0 in the stat."""
    board = load("probewatch-overview")
    for name in setup.pending(json.dumps(board["panels"])):
        pending(name, "exported by the exporter")
    rows = evaluate(setup.prom, board, "Skipped runs by cause")
    jobs = {"main": MAIN_JOB, "replica": MAIN_JOB, "staging": STAGING_JOB}
    assert rows == {(jobs[name], address, cause): 0.0
                    for name, address in setup.addresses.items() for cause in ("busy", "late")}
    assert evaluate(setup.prom, board, "Skipped runs") == {(): 0.0}


def test_every_probe_dashboard_query_returns_data(setup: Setup) -> None:
    """Each query has data for the probes it is about: some panels are one kind's."""
    prom = setup.prom
    board = load("probewatch-probe")
    empty = []
    for p in filter(must_have_data, data_panels(board)):
        for target in queries(p):
            results = []
            for job, probe in setup.probes():
                values = {**default_values(board), **BUILTINS, "job": job,
                          "probe": probe["name"], "group": probe["labels"]["group"]}
                expr = substitute(target["expr"], values)
                results += prom.query(expr, instant=target.get("instant", False))
            if not results:
                empty.append(f"{p['title']!r} {target['refId']}: {target['expr']}")
    assert empty == [], "panels without data for any probe:\n" + "\n".join(empty)


def expected_state(setup: Setup) -> dict[tuple[str, str], float]:
    """UP (1) or DOWN (0) per (job, probe), as ProbeFailing sees it: down if any replica fails."""
    down = {(MAIN_JOB, "web-refused"), (MAIN_JOB, "job-failing"), (MAIN_JOB, "queue"),
            (MAIN_JOB, "ha-exit"), (MAIN_JOB, "ha-timeout"), (STAGING_JOB, "web")}
    return {(job, p["name"]): 0.0 if (job, p["name"]) in down else 1.0
            for job, p in setup.probes()}


def test_overview_state_shows_a_probe_down_when_one_replica_fails(setup: Setup) -> None:
    board = load("probewatch-overview")
    state = expected_state(setup)
    assert evaluate(setup.prom, board, "Probe state") == state
    assert evaluate(setup.prom, board, "Probes down") == {(): list(state.values()).count(0.0)}
    assert evaluate(setup.prom, board, "Probes up") == {(): list(state.values()).count(1.0)}
    assert evaluate(setup.prom, board, "Probes configured") == {(): len(state)}


def test_probe_dashboard_state_follows_the_failing_replica(setup: Setup) -> None:
    board = load("probewatch-probe")
    main, replica = setup.addresses["main"], setup.addresses["replica"]
    for name in ("ha-exit", "ha-timeout"):
        assert evaluate(setup.prom, board, "State", probe=name) == {(MAIN_JOB,): 0.0}
        assert evaluate(setup.prom, board, "State per exporter", probe=name) == {
            (MAIN_JOB, main): 1.0, (MAIN_JOB, replica): 0.0}
        assert evaluate(setup.prom, board, "Availability", probe=name) == {(MAIN_JOB,): 0.0}
    # The code shown is the failing replica's: higher (exit 1) or lower (none: -1) than main's 0.
    codes = {"ha-exit": 1.0, "ha-timeout": -1.0}
    for name, code in codes.items():
        assert evaluate(setup.prom, board, "Return code", probe=name) == {(MAIN_JOB,): code}
    overview = evaluate(setup.prom, load("probewatch-overview"), "Return code", probe="ha-.*")
    assert overview == {(MAIN_JOB, name): code for name, code in codes.items()}


def test_same_probe_name_in_two_deployments_stays_apart(setup: Setup) -> None:
    overview, probe = load("probewatch-overview"), load("probewatch-probe")
    assert evaluate(setup.prom, overview, "Probe state", probe="web") == {
        (MAIN_JOB, "web"): 1.0, (STAGING_JOB, "web"): 0.0}
    assert evaluate(setup.prom, overview, "Probe state", probe="web", job=STAGING_JOB) == {
        (STAGING_JOB, "web"): 0.0}
    assert evaluate(setup.prom, overview, "Probe state", probe="web", namespace="staging") == {
        (STAGING_JOB, "web"): 0.0}
    assert evaluate(setup.prom, probe, "State", probe="web") == {
        (MAIN_JOB,): 1.0, (STAGING_JOB,): 0.0}
    assert evaluate(setup.prom, probe, "State", probe="web", job=MAIN_JOB) == {(MAIN_JOB,): 1.0}


def test_availability_is_the_share_of_runs_that_succeeded(setup: Setup) -> None:
    """Probes always failing show 0%, probes up about 100%, an HA probe its worst replica's.

    ha-exit and ha-timeout succeed on main and fail on the replica: the worst
    replica's 0%, where counting both replicas' runs together would show 50%.
    A run of a probe meant to be up may time out on a loaded machine, so those
    are held to 80% and up rather than exactly 100%.
    """
    board = load("probewatch-overview")
    state = expected_state(setup)
    table = {title: evaluate(setup.prom, board, "Runs and failures in the time range", ref)
             for title, ref in (("availability", "A"), ("runs", "B"), ("failures", "C"))}
    for shown in (evaluate(setup.prom, board, "Availability"), table["availability"]):
        assert set(shown) == set(state)
        for key, up in state.items():
            assert (0.8 <= shown[key] <= 1.0) if up else shown[key] == 0.0, (key, shown[key])
    for key, up in state.items():
        runs, failures = table["runs"][key], table["failures"][key]
        assert runs >= 5, (key, runs)
        # Evaluated a moment apart from availability: the counters may have moved by a run.
        if up:
            assert failures <= 0.2 * runs, (key, runs, failures)
        else:
            assert abs(failures - runs) <= 1.5, (key, runs, failures)
    probe = load("probewatch-probe")
    assert evaluate(setup.prom, probe, "Availability", probe="job-failing") == {(MAIN_JOB,): 0.0}
    assert evaluate(setup.prom, probe, "Availability", probe="web", job=STAGING_JOB) == {
        (STAGING_JOB,): 0.0}


def test_reported_values_go_to_the_panel_of_their_unit(setup: Setup) -> None:
    for name in ("probewatch-overview", "probewatch-probe"):
        board = load(name)
        for title, fields in VALUE_PANELS.items():
            found = evaluate(setup.prom, board, title, probe="queue")
            assert {key[-1] for key in found} == fields, (name, title, found)
            assert set(found.values()) == {float(STATUS_VALUES[f]) for f in fields}


def test_failing_probes_show_with_reason(setup: Setup) -> None:
    board = load("probewatch-overview")
    expr = substitute(queries(panel(board, "Failing now"))[0]["expr"],
                      {**default_values(board), **BUILTINS})
    rows = {(r["metric"]["job"], r["metric"]["instance"], r["metric"]["probe"]):
            r["metric"]["reason"] for r in setup.prom.query(expr, instant=True)}
    main, replica, staging = (setup.addresses[n] for n in ("main", "replica", "staging"))
    # The json document reports Warning, and only OK counts as up by default.
    assert rows == {(MAIN_JOB, main, "web-refused"): "refused",
                    (MAIN_JOB, main, "job-failing"): "unexpected_code",
                    (MAIN_JOB, main, "queue"): "unexpected_response",
                    (MAIN_JOB, replica, "ha-exit"): "unexpected_code",
                    (MAIN_JOB, replica, "ha-timeout"): "timeout",
                    (STAGING_JOB, staging, "web"): "refused"}


def test_icmp_panels_show_the_ping_probe(setup: Setup) -> None:
    """Where pings can be sent, the loopback probe's round trips and its 0% loss are on the panels."""
    if not icmp_usable():
        missing("ICMP echo sockets for the icmp panels (run as root, or set "
                "net.ipv4.ping_group_range to include this user's group)")
    board = load("probewatch-overview")
    rtt = evaluate(setup.prom, board, "ICMP round trip", probe="loopback-ping")
    assert set(rtt) == {(MAIN_JOB, "loopback-ping", stat) for stat in ("avg", "max")}
    assert all(0 < v < 1 for v in rtt.values()), rtt
    assert rtt[(MAIN_JOB, "loopback-ping", "avg")] <= rtt[(MAIN_JOB, "loopback-ping", "max")]
    loss = evaluate(setup.prom, board, "ICMP packet loss", probe="loopback-ping")
    assert loss == {(MAIN_JOB, "loopback-ping"): 0.0}
