"""GET /, the status page (exporter/status/page*.py), checked in headless Chromium.

The screenshots the run saves under build/screenshots/: status-page.png (phone,
412x915) and status-page-desktop.png (1280x800) of the small page, and
status-page-operator.png (1280x800; docs/images/status-page.png is a copy),
status-page-operator-phone.png and status-page-operator-360.png (360x800) of
the operator's page with failing tcp and command probes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from exporter.config import ProbeSpec
from exporter.probe_state import ProbeState
from exporter.scheduler import phase
from exporter.status.collate import Selection
from exporter.status.page import render
from probes.base import Result
from tests.exporter.exporter_process import Running, serve
from tests.support import ROOT, process, require_binary, wait_for

SCREENSHOTS = ROOT / "build" / "screenshots"
PHONE = (412, 915)
DESKTOP = (1280, 800)
INJECTED = '<b id="injected">boom</b>'
# A name whose slot is at least 10 minutes after start and whose early first run
# (scheduler.FIRST_RUN_SPREAD) lasts 50s: it stays "pending" through the test.
PENDING = next(f"later-{i}" for i in range(1000) if phase(f"later-{i}", 3600) > 600)


def chromium(target: str, *args: str) -> str:
    """Run Debian's headless Chromium with networking beyond loopback left quiet."""
    binary = require_binary("chromium")
    with tempfile.TemporaryDirectory(prefix="probewatch-chromium-") as profile:
        argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", *args, target]
        with process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {err[-2000:]}"
    return out


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Node] = field(default_factory=list)

    def find_all(self, test: object) -> list[Node]:
        found = [self] if callable(test) and test(self) else []
        for child in self.children:
            found += child.find_all(test)
        return found


class _Tree(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        for node in self.stack:
            node.text += data


def dom(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def cards(root: Node) -> dict[str, Node]:
    return {n.attrs["data-probe"]: n for n in root.find_all(lambda n: "data-probe" in n.attrs)}


def png_size(path: Path) -> tuple[int, int]:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", blob[16:24])
    return width, height


PAGE_CONFIG = """
defaults: {{period: 1s, timeout: 500ms}}
probes:
  - {{name: web-up, kind: command, command: {{argv: ["true"]}},
      labels: {{group: "<i>web</i>", severity: critical}}}}
  - name: web-down
    kind: command
    labels: {{group: "<i>web</i>", severity: warning}}
    command: {{shell: true, argv: [{shell_line}]}}
  - {{name: db-down, kind: command, command: {{argv: ["false"]}}, labels: {{group: db}}}}
  - {{name: {pending}, kind: command, period: 1h, timeout: 50s, command: {{argv: ["sleep", "60"]}}}}
  - {{name: resting, kind: command, active: false, command: {{argv: ["true"]}}}}
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    require_binary("chromium")
    tmp = tmp_path_factory.mktemp("page")
    config = tmp / "probewatch.yml"
    shell_line = json.dumps(f"echo '{INJECTED}'; exit 1")  # JSON strings are YAML strings
    config.write_text(PAGE_CONFIG.format(shell_line=shell_line, pending=PENDING))
    with serve(config) as pw:
        def three_runs() -> bool:
            listed = requests.get(f"{pw.url}/api/v1/probes?label=group:db", timeout=10).json()
            return bool(listed["probes"][0]["last_run"]) and all(
                requests.get(f"{pw.url}/api/v1/probes/{n}", timeout=10).json()["runs_total"] >= 3
                for n in ("web-up", "web-down", "db-down"))
        wait_for(three_runs, 15, what="three runs of each running probe")
        yield pw


def test_the_page_shows_each_probe_with_its_state(page: Running) -> None:
    root = dom(chromium(f"{page.url}/", "--dump-dom"))
    found = cards(root)
    pending = PENDING
    assert sorted(found) == sorted(["web-up", "web-down", "db-down", pending, "resting"])
    states = {name: (n.attrs["data-state"], n.attrs["data-level"]) for name, n in found.items()}
    assert states == {"web-up": ("up", "OK"), "web-down": ("down", "Warning"),
                      "db-down": ("down", "Critical"), pending: ("pending", "Unknown"),
                      "resting": ("inactive", "Unknown")}
    for name, node in found.items():
        badge = node.find_all(lambda n: "badge" in n.attrs.get("class", ""))[0]
        assert badge.text == ("Inactive" if name == "resting" else states[name][1])
        assert states[name][0] in node.text
        assert name in node.find_all(lambda n: n.attrs.get("class") == "name")[0].text
    # Time of the last change, latency and a strip of recent runs on each card that ran.
    down = found["db-down"]
    assert down.find_all(lambda n: n.tag == "time")[0].attrs["datetime"]
    assert " ms" in down.find_all(lambda n: n.attrs.get("class") == "latency")[0].text
    strip = down.find_all(lambda n: n.attrs.get("class") == "strip")[0]
    assert len(strip.children) >= 3 and all(c.attrs["class"] == "down" for c in strip.children)
    assert "exit code 1 (accepted: 0)" in down.text
    assert "not run yet" in found[pending].text
    overall = root.find_all(lambda n: n.attrs.get("id") == "overall")[0]
    assert overall.attrs["data-status"] == overall.text == "Critical"
    # Groups by the group label, failing groups first (Critical before Warning), ungrouped last.
    headings = [n.text for n in root.find_all(lambda n: n.tag == "h2")]
    assert headings == ["db", "<i>web</i>", "ungrouped"]


def test_html_in_labels_and_messages_is_shown_as_text(page: Running) -> None:
    root = dom(chromium(f"{page.url}/", "--dump-dom"))
    assert not root.find_all(lambda n: n.attrs.get("id") == "injected")
    message = cards(root)["web-down"].find_all(lambda n: n.attrs.get("class") == "message")[0]
    assert message.text == f"exit code 1 (accepted: 0): {INJECTED}"
    assert message.children == []
    heading = root.find_all(lambda n: n.tag == "h2" and "web" in n.text)[0]
    assert heading.text == "<i>web</i>" and heading.children == []


def test_a_name_with_html_in_it_is_shown_as_text(tmp_path: Path) -> None:
    # The config refuses such names; the page escapes them anyway, should one get through.
    name = '<img id="evil" src="x">'
    spec = ProbeSpec(name=name, kind="tcp", target="127.0.0.1:1", period=1.0, timeout=0.5,
                     active=True, labels=(("group", '"><script>x</script>'),), failures=3,
                     options=None)
    state = ProbeState(spec)
    state.record(Result.fail("refused", "<script>alert(1)</script>"), 0.001, time.time())
    html_file = tmp_path / "page.html"
    html_file.write_text(render([state], Selection(), 10, time.time()))
    root = dom(chromium(html_file.as_uri(), "--dump-dom"))
    # The page's own script is its only one.
    assert not root.find_all(lambda n: n.tag in ("img", "script")
                             and n.attrs.get("id") != "page-script")
    assert list(cards(root)) == [name]
    assert root.find_all(lambda n: n.attrs.get("class") == "name")[0].text == name


def test_the_page_is_self_contained_and_refreshes_itself(page: Running) -> None:
    resp = requests.get(f"{page.url}/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    html = resp.text
    # Without JavaScript the meta refresh reloads the page; with it, the inline script
    # refreshes in place (test_the_script_refreshes_in_place_keeping_the_scroll_position).
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in html
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html
    assert "<link" not in html and "<script src" not in html and "src=" not in html
    assert "http://" not in html and "https://" not in html and "url(" not in html
    quick = requests.get(f"{page.url}/?refresh=3&group=db", timeout=10)
    assert '<meta http-equiv="refresh" content="3">' in quick.text
    assert sorted(cards(dom(quick.text))) == ["db-down"]
    assert requests.get(f"{page.url}/?refresh=0", timeout=10).status_code == 400
    assert requests.get(f"{page.url}/?colour=red", timeout=10).status_code == 400


def test_screenshots_for_phone_and_desktop(page: Running) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for path, (width, height) in ((SCREENSHOTS / "status-page.png", PHONE),
                                  (SCREENSHOTS / "status-page-desktop.png", DESKTOP)):
        path.unlink(missing_ok=True)
        chromium(f"{page.url}/", f"--screenshot={path}", f"--window-size={width},{height}",
                 "--hide-scrollbars")
        assert path.exists(), f"chromium wrote no screenshot to {path}"
        assert png_size(path) == (width, height)
        assert path.stat().st_size > 20_000, f"{path} looks blank ({path.stat().st_size} bytes)"


# -- the operator's page: failing first, filters, code and reason, links, phone width --------

GRAFANA = "https://grafana.example.invalid/d/probewatch-probe/probe?var-group={group}&var-probe={probe}"
PROMETHEUS = "https://prometheus.example.invalid/"
LONG_NAME = "payments-settlement-reconciliation-nightly-verification"
LONG_TARGET = "replica.db.internal.example.invalid:5432/accounting_replica_with_a_long_name"
OPERATOR_CONFIG = """
defaults: {{period: 1s, timeout: 500ms}}
web:
  external_urls: {{grafana: "{grafana}", prometheus: "{prometheus}"}}
probes:
  - {{name: alpha-1, kind: tcp, target: "{up}", labels: {{group: alpha}}}}
  - {{name: alpha-2, kind: tcp, target: "{up}", labels: {{group: alpha}}}}
  - {{name: db-primary, kind: tcp, target: "{up}", labels: {{group: db}}}}
  - name: db-replica
    kind: command
    target: "{long_target}"
    failures: 2
    labels: {{group: db, severity: critical}}
    command: {{shell: true, argv: ["echo replica lag 42s; exit 3"]}}
  - {{name: edge-cdn, kind: tcp, target: "{up}", labels: {{group: edge}}}}
  - {{name: edge-gateway, kind: tcp, target: "{closed}", failures: 5,
      labels: {{group: edge, severity: warning}}}}
  - {{name: {long_name}, kind: tcp, target: "{up}"}}
"""
# Display order: failing groups first (Critical before Warning), failing probes first in a group.
OPERATOR_ORDER = ["db-replica", "db-primary", "edge-gateway", "edge-cdn", "alpha-1", "alpha-2",
                  LONG_NAME]
# Elements whose text must stay on one line at 360 px (they are tokens, not prose).
TOKENS = ".badge,.name,.state,.kind,.target,.code,.reason,.fact,time,.pill,.label,h2,.gcount"
# Headless Chromium's window is at least 500 px wide, so the page is measured in a
# 360 px iframe of a harness page served from the page's own origin (through _Proxy).
MEASURE = """<!doctype html><html><body style="margin:0">
<iframe id="phone" src="/" width="360" height="800" style="border:0"></iframe>
<script>
document.getElementById("phone").addEventListener("load", function(){
  var win = this.contentWindow, doc = this.contentDocument;
  var out = {innerWidth: win.innerWidth, scrollWidth: doc.documentElement.scrollWidth,
             bodyScrollWidth: doc.body.scrollWidth, wrapped: [], checked: 0};
  doc.querySelectorAll(TOKENS).forEach(function(el){
    var r = doc.createRange(); r.selectNodeContents(el);
    var lines = {};
    Array.prototype.forEach.call(r.getClientRects(), function(x){
      if (x.width > 0) lines[Math.round(x.bottom)] = 1; });
    out.checked++;
    if (Object.keys(lines).length > 1) out.wrapped.push(el.className + ": " + el.textContent);
  });
  var pre = document.createElement("pre"); pre.id = "measured";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
  var copy = document.createElement("div"); copy.id = "copy";
  copy.innerHTML = doc.getElementById("cards").innerHTML; document.body.appendChild(copy);
});
</script></body></html>""".replace("TOKENS", json.dumps(TOKENS))


class _Proxy:
    """Loopback HTTP proxy to the exporter that also serves ``harness`` at /__harness.

    The harness runs our script against the page in an iframe of the same
    origin, and the page's own fetches go on to the exporter.
    """

    def __init__(self, upstream: str, harness: str) -> None:
        import http.server
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/__harness":
                    status, kind, body = 200, "text/html; charset=utf-8", harness.encode()
                else:
                    resp = requests.get(upstream + self.path, timeout=10)
                    status, body = resp.status_code, resp.content
                    kind = resp.headers.get("Content-Type", "")
                    proxy.paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.paths: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from tests.probes.servers import TcpServer, closed_port

    require_binary("chromium")
    tmp = tmp_path_factory.mktemp("operator")
    listener = TcpServer(lambda conn: b"")
    config = tmp / "probewatch.yml"
    config.write_text(OPERATOR_CONFIG.format(
        grafana=GRAFANA, prometheus=PROMETHEUS, up=listener.target,
        closed=f"127.0.0.1:{closed_port()}", long_name=LONG_NAME, long_target=LONG_TARGET))
    try:
        with serve(config) as pw:
            def settled() -> bool:
                listed = requests.get(f"{pw.url}/api/v1/probes", timeout=10).json()["probes"]
                return all(p["last_run"] for p in listed) and all(
                    requests.get(f"{pw.url}/api/v1/probes/{n}", timeout=10).json()["runs_total"] >= 3
                    for n in ("db-replica", "edge-gateway"))
            wait_for(settled, 20, what="every probe ran, the failing ones three times")
            yield pw
    finally:
        listener.close()


def measured(root: Node) -> dict[str, object]:
    pre = root.find_all(lambda n: n.attrs.get("id") == "measured")
    assert pre, "the measuring script did not run"
    result: dict[str, object] = json.loads(pre[0].text)
    return result


def classed(node: Node, name: str) -> list[Node]:
    return node.find_all(lambda n: name in n.attrs.get("class", "").split())


def test_failing_groups_and_probes_come_first(operator: Running) -> None:
    root = dom(chromium(f"{operator.url}/", "--dump-dom"))
    order = [n.attrs["data-probe"] for n in root.find_all(lambda n: "data-probe" in n.attrs)]
    assert order == OPERATOR_ORDER
    headings = [n.text for n in root.find_all(lambda n: n.tag == "h2")]
    assert headings == ["db", "edge", "alpha", "ungrouped"]
    # No card repeats its group label; the other labels stay.
    replica = cards(root)["db-replica"]
    assert "group=" not in replica.text and "severity=critical" in replica.text
    # The summary bar: counts per level, each a link that filters to those probes.
    pills = {n.text: n.attrs["href"] for n in classed(root, "pill")}
    assert pills == {"all 7": "?", "Critical 1": "?level=critical", "Warning 1": "?level=warning",
                     "Unknown 0": "?level=unknown", "OK 5": "?level=ok",
                     "2 failing": "?failing=1"}
    # Following a part of the bar shows as many cards as it counts, and marks the part.
    for text, href in pills.items():
        count = 7 if text.startswith("all") else int(text.split()[0 if "failing" in text else 1])
        shown = dom(requests.get(f"{operator.url}/{href}", timeout=10).text)
        assert len(cards(shown)) == count, (text, href)
        current = [n.text for n in classed(shown, "current")]
        assert current == [text], (text, current)
    meta = classed(root, "meta")[0].text
    assert "7 probes · 2 failing" in meta
    assert root.find_all(lambda n: n.attrs.get("id") == "overall")[0].text == "Critical"


def test_a_failure_shows_its_code_reason_and_alert_threshold(operator: Running) -> None:
    found = cards(dom(chromium(f"{operator.url}/", "--dump-dom")))
    replica, gateway = found["db-replica"], found["edge-gateway"]
    assert classed(replica, "code")[0].text == "3"
    assert classed(replica, "reason")[0].text == "unexpected_code"
    assert classed(replica, "message")[0].text == "exit code 3 (accepted: 0): replica lag 42s"
    assert classed(gateway, "code")[0].text == "-1"
    assert classed(gateway, "reason")[0].text == "refused"
    # db-replica alerts at 2 failures and has 3 or more; edge-gateway needs 5 (it may have
    # reached them by now on a slow machine: only the attribute's presence is certain).
    threshold = classed(replica, "threshold")[0]
    assert threshold.attrs["data-threshold"] == "reached"
    assert "alert threshold (2) reached" in threshold.text
    assert "threshold" in classed(gateway, "threshold")[0].text
    for name in ("db-primary", "alpha-1", LONG_NAME):
        assert not classed(found[name], "failure") and not classed(found[name], "threshold")
        uptime = classed(found[name], "uptime")[0]
        assert uptime.text.startswith("uptime 100% of ") and " runs " in uptime.text
    assert classed(replica, "uptime")[0].text.startswith("uptime 0.0% of ")
    time_node = found["db-replica"].find_all(lambda n: n.tag == "time")[0]
    assert time_node.attrs["datetime"] and time_node.attrs["title"]
    assert time_node.text.endswith(" ago")


def test_each_card_links_to_its_api_document_grafana_and_prometheus(operator: Running) -> None:
    from urllib.parse import parse_qs, urlsplit

    found = cards(dom(chromium(f"{operator.url}/", "--dump-dom")))
    for name, node in found.items():
        links = {a.text: a.attrs["href"] for a in node.find_all(lambda n: n.tag == "a")}
        assert links["API"] == f"api/v1/probes/{name}"  # relative: works under a path prefix
        doc = requests.get(f"{operator.url}/{links['API']}", timeout=10)
        assert doc.status_code == 200 and doc.json()["name"] == name
        group = node.attrs["data-group"]
        assert links["Grafana"] == GRAFANA.format(group=group, probe=name)
        graph = urlsplit(links["Prometheus"])
        assert f"{graph.scheme}://{graph.netloc}{graph.path}" == PROMETHEUS + "graph"
        assert parse_qs(graph.query)["g0.expr"] == [f'probewatch_probe_up{{probe="{name}"}}']
    # Without web.external_urls a card links only to its API document.
    assert sorted(found) == sorted(OPERATOR_ORDER)


def test_without_external_urls_only_the_api_is_linked(page: Running) -> None:
    for node in cards(dom(requests.get(f"{page.url}/", timeout=10).text)).values():
        assert [a.text for a in node.find_all(lambda n: n.tag == "a")] == ["API"]


@pytest.mark.parametrize(("query", "expected"), [
    ("?level=critical", ["db-replica"]),
    ("?level=warning&level=critical", ["db-replica", "edge-gateway"]),
    ("?level=OK&group=db", ["db-primary"]),
    ("?group=edge", ["edge-gateway", "edge-cdn"]),
    ("?failing=1", ["db-replica", "edge-gateway"]),
    ("?failing=1&group=alpha", []),
    ("?q=replica+lag", ["db-replica"]),
    ("?q=REFUSED", ["edge-gateway"]),
    ("?q=alpha", ["alpha-1", "alpha-2"]),
    ("?q=&level=&group=&failing=0", OPERATOR_ORDER),  # an untouched form
])
def test_filters_are_query_parameters_that_work_without_javascript(
        operator: Running, query: str, expected: list[str]) -> None:
    # The server does the filtering: the HTML as served is what a browser without
    # JavaScript shows (Chromium's --dump-dom itself needs JavaScript).
    root = dom(requests.get(f"{operator.url}/{query}", timeout=10).text)
    assert [n.attrs["data-probe"] for n in root.find_all(lambda n: "data-probe" in n.attrs)] \
        == expected
    if not expected:
        assert "No probe matches the filters" in root.text
    # The form shows the filters in force, so the next submit keeps them.
    form = root.find_all(lambda n: n.attrs.get("id") == "filters")[0]
    failing_box = form.find_all(lambda n: n.attrs.get("name") == "failing")[0]
    assert ("checked" in failing_box.attrs) == ("failing=1" in query)


def test_a_shared_filter_link_renders_in_chromium(operator: Running) -> None:
    root = dom(chromium(f"{operator.url}/?failing=1&q=edge", "--dump-dom"))
    assert list(cards(root)) == ["edge-gateway"]
    form = root.find_all(lambda n: n.attrs.get("id") == "filters")[0]
    search = form.find_all(lambda n: n.attrs.get("name") == "q")[0]
    assert search.attrs["value"] == "edge"
    assert "showing 1" in classed(root, "meta")[0].text


def test_bad_filter_values_are_refused_with_a_reason(operator: Running) -> None:
    for query, words in (("?level=purple", "level='purple' must be one of critical"),
                         ("?failing=maybe", "failing='maybe' must be 1 or 0"),
                         ("?page=0", "page='0' must be a whole number from 1"),
                         ("?sort=name", "unknown query parameter 'sort'"),
                         ("?label=nocolon", "must be key:value")):
        resp = requests.get(f"{operator.url}/{query}", timeout=10)
        assert resp.status_code == 400, query
        assert words in resp.text, (query, resp.text)


def test_large_sets_are_paginated_failing_first() -> None:
    from exporter.status.page_filters import PAGE_SIZE, PageQuery, build_view

    assert PAGE_SIZE == 100  # documented in docs/status-api.md and the README
    now = time.time()
    states = []
    for i in range(450):
        spec = ProbeSpec(name=f"p{i:03d}", kind="tcp", target="127.0.0.1:1", period=30.0,
                         timeout=5.0, active=True, labels=(("group", f"g{i % 3}"),), failures=3,
                         options=None)
        state = ProbeState(spec)
        up = i % 50 != 7
        state.record(Result.ok(0) if up else Result.fail("refused", "refused"), 0.001, now - 1)
        states.append(state)
    first = build_view(states, PageQuery())
    assert (first.pages, first.shown, first.failing) == (5, 450, 9)
    assert first.counts == {"Critical": 9, "Warning": 0, "Unknown": 0, "OK": 441}
    shown = [s.spec.name for g in first.groups for s, _ in g.cards]
    # Every group has three failing probes: g0 comes first by name, its failing probes first.
    assert len(shown) == PAGE_SIZE and shown[:4] == ["p057", "p207", "p357", "p000"]
    html = render(states, query=PageQuery(page=2))
    assert "page 2 of 5" in html and 'href="?page=3"' in html and 'href="?"' in html
    assert "continued" in html
    later = build_view(states, PageQuery(page=99))
    assert later.page == 5 and sum(len(g.cards) for g in later.groups) == 50


def test_one_probe_is_worded_in_the_singular() -> None:
    from exporter.status.collate import collate

    spec = ProbeSpec(name="solo", kind="tcp", target="127.0.0.1:1", period=30.0, timeout=5.0,
                     active=True, labels=(), failures=3, options=None)
    state = ProbeState(spec)
    state.record(Result.ok(0), 0.001, time.time())
    assert collate([state], Selection()).message == "1 probe, OK"
    root = dom(render([state], Selection(), 10, time.time()))
    assert classed(root, "meta")[0].text.startswith("1 probe, OK")
    assert classed(root, "gcount")[0].text == "1 probe"


def test_nothing_wraps_mid_token_or_scrolls_sideways_at_360px(operator: Running) -> None:
    proxy = _Proxy(operator.url, MEASURE)
    try:
        root = dom(chromium(f"{proxy.url}/__harness", "--dump-dom"))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "status-page-operator-360.png"
        shot.unlink(missing_ok=True)
        chromium(f"{operator.url}/", f"--screenshot={shot}", "--window-size=360,800",
                 "--hide-scrollbars")
        assert png_size(shot) == (360, 800)
    finally:
        proxy.close()
    width = measured(root)
    assert width["innerWidth"] == 360, width
    assert width["scrollWidth"] <= 360 and width["bodyScrollWidth"] <= 360, width
    assert width["checked"] > 50 and width["wrapped"] == [], width
    # The long name and target are cut with an ellipsis, whole in the tooltip.
    replica = cards(root)["db-replica"]
    assert classed(replica, "target")[0].attrs["title"] == LONG_TARGET


REFRESH_CHECK = """<!doctype html><html><body style="margin:0">
<iframe id="phone" src="/?refresh=1" width="360" height="800" style="border:0"></iframe>
<script>
var loads = 0, frame = document.getElementById("phone");
frame.addEventListener("load", function(){
  loads++;
  if (loads > 1) return;
  var win = frame.contentWindow;
  win.scrollTo(0, 300);
  var y0 = win.scrollY;
  setTimeout(function(){
    var body = frame.contentDocument.body, pre = document.createElement("pre");
    pre.id = "measured";
    pre.textContent = JSON.stringify({y0: y0, y: win.scrollY, loads: loads,
      refreshes: +body.getAttribute("data-refreshes") || 0,
      localized: body.hasAttribute("data-localized"),
      cards: frame.contentDocument.querySelectorAll("[data-probe]").length});
    document.body.appendChild(pre);
  }, 4500);
});
</script></body></html>"""


def test_the_script_refreshes_in_place_keeping_the_scroll_position(operator: Running) -> None:
    proxy = _Proxy(operator.url, REFRESH_CHECK)
    try:
        root = dom(chromium(f"{proxy.url}/__harness", "--virtual-time-budget=8000",
                            "--dump-dom"))
        fetched = list(proxy.paths)
    finally:
        proxy.close()
    seen = measured(root)
    assert seen["loads"] == 1, seen  # the page was not reloaded
    assert seen["refreshes"] >= 1 and fetched.count("/?refresh=1") >= 2, (seen, fetched)
    assert seen["y0"] == 300 and seen["y"] == 300, seen
    assert seen["localized"] and seen["cards"] == len(OPERATOR_ORDER), seen


def test_operator_screenshots(operator: Running) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for path, (width, height) in ((SCREENSHOTS / "status-page-operator.png", DESKTOP),
                                  (SCREENSHOTS / "status-page-operator-phone.png", (360, 800))):
        path.unlink(missing_ok=True)
        chromium(f"{operator.url}/", f"--screenshot={path}", f"--window-size={width},{height}",
                 "--hide-scrollbars")
        assert png_size(path) == (width, height)
        assert path.stat().st_size > 20_000, f"{path} looks blank ({path.stat().st_size} bytes)"


def test_uptime_covers_the_kept_history_and_the_last_hour_once_it_reaches_back_that_far() -> None:
    from exporter.history import Run

    now = time.time()
    spec = ProbeSpec(name="hourly", kind="tcp", target="127.0.0.1:1", period=60.0, timeout=5.0,
                     active=True, labels=(), failures=5, options=None)
    state = ProbeState(spec)
    # 99 runs a minute apart (99 min): 10 failures before the last hour, 2 within the last
    # 10 minutes, then a failed run through record().
    for k in range(99):
        started = now - 60 * (100 - k)
        up = not (k < 10 or k in (92, 95))
        state.recent.append(Run(started, 0.002, up, 0 if up else -1, "" if up else "refused", ""))
    state.record(Result.fail("refused", "connection refused"), 0.002, now - 30)
    found = cards(dom(render([state], Selection(), 10, now)))["hourly"]
    assert classed(found, "uptime")[0].text.startswith("uptime 87.0% of 100 runs (1 h)")
    # The last hour: 60 runs, 3 failed.
    assert classed(found, "uptime-hour")[0].text == "last hour 95.0%"
    threshold = classed(found, "threshold")[0]
    assert threshold.attrs["data-threshold"] == "below"
    assert threshold.text == "3 failures in 10 min, 1 in a row: threshold is 5"
    # A probe whose history is shorter than an hour shows no last-hour figure.
    fresh = ProbeState(spec)
    fresh.record(Result.ok(0), 0.002, now - 1)
    assert not classed(cards(dom(render([fresh], Selection(), 10, now)))["hourly"], "uptime-hour")
