"""GET /, the status page (exporter/status/page.py), checked in headless Chromium.

The screenshots the run saves are build/screenshots/status-page.png (phone,
412x915) and build/screenshots/status-page-desktop.png (1280x800).
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
from exporter.scheduler import phase
from exporter.state import ProbeState
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
    # Groups by the group label, probes without one last.
    headings = [n.text for n in root.find_all(lambda n: n.tag == "h2")]
    assert headings == ["<i>web</i>", "db", "ungrouped"]


def test_html_in_labels_and_messages_is_shown_as_text(page: Running) -> None:
    root = dom(chromium(f"{page.url}/", "--dump-dom"))
    assert not root.find_all(lambda n: n.attrs.get("id") == "injected")
    message = cards(root)["web-down"].find_all(lambda n: n.attrs.get("class") == "message")[0]
    assert message.text == f"exit code 1 (accepted: 0): {INJECTED}"
    assert message.children == []
    heading = root.find_all(lambda n: n.tag == "h2")[0]
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
    assert not root.find_all(lambda n: n.tag in ("img", "script"))
    assert list(cards(root)) == [name]
    assert root.find_all(lambda n: n.attrs.get("class") == "name")[0].text == name


def test_the_page_is_self_contained_and_refreshes_itself(page: Running) -> None:
    resp = requests.get(f"{page.url}/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    html = resp.text
    assert '<meta http-equiv="refresh" content="10">' in html
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html
    assert "<link" not in html and "<script" not in html and "src=" not in html
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
