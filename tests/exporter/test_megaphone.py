"""Megaphone's API against the real exporter (exporter/status/megaphone.py).

The main test replays the example session of Megaphone's README, with its two
sample services (sample_service.py OK, sample_service2.py Warning) stood up as
loopback HTTP servers on ports the kernel picks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from exporter.status.megaphone import is_loopback
from tests.exporter.exporter_process import Running, serve
from tests.support import ROOT, probewatch_argv, wait_for

# What Megaphone's README shows the two sample services answering.
BAR_DOC = {"status": "OK", "date": "2013-06-06T14:51:56CDT",
           "message": "Everything is groovy man.", "version": "1.0.0"}
FOO_DOC = {"status": "Warning", "date": "2013-06-06T14:54:21CDT",
           "message": "Houston, I think we have a problem.", "version": "2.0.0"}
TOKEN = "megaphone-test-token"


@contextmanager
def sample_service(doc: dict[str, Any]) -> Iterator[str]:
    """A Megaphone sample service: GET /q/status answers ``doc``; yields its URL."""
    body = json.dumps(doc).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/q/status" else 404
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if code == 200 else 0))
            self.end_headers()
            if code == 200:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/q/status"
    finally:
        server.shutdown()
        server.server_close()


def config_file(tmp_path: Path, api: str = "") -> Path:
    config = tmp_path / "probewatch.yml"
    config.write_text(f"defaults: {{period: 1s, timeout: 800ms}}\n{api}probes: []\n")
    return config


def status(pw: Running) -> tuple[int, dict[str, Any]]:
    resp = requests.get(f"{pw.url}/status", timeout=10)
    return resp.status_code, resp.json()


def check_list(pw: Running) -> dict[str, str]:
    resp = requests.get(f"{pw.url}/check/list", timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def add(pw: Running, check_id: str, url: str, **kw: Any) -> requests.Response:
    return requests.put(f"{pw.url}/check/add", data=json.dumps({"id": check_id, "url": url}),
                        timeout=10, **kw)


def show(pw: Running, path: str) -> dict[str, Any]:
    resp = requests.get(f"{pw.url}/check/show/{path}", timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_megaphone_readme_session_replayed(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with sample_service(BAR_DOC) as bar_url, sample_service(FOO_DOC) as foo_url:
        with serve(config) as pw:
            # Check initial status / List current checks
            code, body = status(pw)
            assert (code, body["status"]) == (503, "Unknown")
            assert {"status", "date", "message"} <= set(body)
            assert check_list(pw) == {}

            # Add a check / Verify check / Check new status
            added = add(pw, "bar", bar_url)
            assert added.status_code == 201, added.text
            assert added.json() == {"id": "bar", "url": bar_url}
            assert check_list(pw) == {"bar": bar_url}
            code, body = wait_for(lambda: (s := status(pw))[1]["status"] == "OK" and s, 10,
                                  what="bar to be OK")
            assert code == 200

            # Add another check / Verify new check / Review new status
            assert add(pw, "foo", foo_url).status_code == 201
            assert check_list(pw) == {"foo": foo_url, "bar": bar_url}
            code, body = wait_for(lambda: (s := status(pw))[1]["status"] == "Warning" and s, 10,
                                  what="foo's Warning to win")
            assert body["message"] == "foo:Warning:Houston, I think we have a problem."
            assert code == 503  # foo is not OK: a load balancer takes this backend out

            # View full status from check 'foo' / 'bar' (the README writes a trailing colon)
            assert show(pw, "foo:") == {**FOO_DOC, "id": "foo"}
            assert show(pw, "bar") == {**BAR_DOC, "id": "bar"}
            detail = requests.get(f"{pw.url}/api/v1/probes/foo", timeout=10).json()
            assert (detail["source"], detail["document"]) == ("api", FOO_DOC)
            missing = requests.get(f"{pw.url}/check/show/nope", timeout=10)
            assert missing.status_code == 404 and "nope" in missing.json()["error"]

            # Removing a check (probewatch's spelling: Megaphone had none)
            gone = requests.delete(f"{pw.url}/check/foo", timeout=10)
            assert gone.status_code == 204
            assert check_list(pw) == {"bar": bar_url}
            assert status(pw)[1]["status"] == "OK"
            assert requests.delete(f"{pw.url}/check/foo", timeout=10).status_code == 404

        # Added checks are kept in the state file: a restart still has bar.
        with serve(config) as pw:
            assert check_list(pw) == {"bar": bar_url}
            wait_for(lambda: show(pw, "bar").get("version") == "1.0.0", 10, what="bar to run")


def test_bad_check_add_bodies_are_400_naming_what(tmp_path: Path) -> None:
    with serve(config_file(tmp_path)) as pw:
        cases = [
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "JSON object"),
            (json.dumps({"url": "http://127.0.0.1:1/"}).encode(), "id:"),
            (json.dumps({"id": "a b", "url": "http://127.0.0.1:1/"}).encode(), "id:"),
            (json.dumps({"id": "a"}).encode(), "url:"),
            (json.dumps({"id": "a", "url": "ftp://127.0.0.1/x"}).encode(), "target"),
        ]
        for body, says in cases:
            resp = requests.put(f"{pw.url}/check/add", data=body, timeout=10)
            assert resp.status_code == 400, (body, resp.text)
            assert says in resp.text, (body, resp.text)
        assert check_list(pw) == {}


def test_token_mode_asks_the_token_of_everyone_and_read_only_refuses(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    api = "api: {token_file: token, megaphone: token}\n"  # relative to the config's folder
    with sample_service(BAR_DOC) as url, serve(config_file(tmp_path, api)) as pw:
        refused = add(pw, "bar", url)
        assert refused.status_code == 401, refused.text
        wrong = add(pw, "bar", url, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = add(pw, "bar", url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 201, ok.text
        assert requests.delete(f"{pw.url}/check/bar", timeout=10).status_code == 401
    off = tmp_path / "off"
    off.mkdir()
    with sample_service(BAR_DOC) as url, serve(config_file(off, "api: {megaphone: read-only}\n")) as pw:
        refused = add(pw, "bar", url)
        assert refused.status_code == 403 and "api.megaphone: read-only" in refused.text
        assert check_list(pw) == {}


def test_check_add_cannot_touch_config_file_probes(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    with sample_service(BAR_DOC) as url:
        config.write_text(f"probes:\n  - {{name: bar, kind: json, target: '{url}', period: 1s}}\n")
        with serve(config) as pw:
            assert check_list(pw) == {"bar": url}  # a json probe from the file is a check too
            clash = add(pw, "bar", url)
            assert clash.status_code == 409 and "config file" in clash.text
            assert requests.delete(f"{pw.url}/check/bar", timeout=10).status_code == 409
            wait_for(lambda: show(pw, "bar").get("version") == "1.0.0", 10, what="bar to run")


def test_loopback_is_recognised_in_every_spelling() -> None:
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(address), address
    for address in ("10.0.0.1", "192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1", "", "unix"):
        assert not is_loopback(address), address


def test_example_megaphone_config_works_from_a_fresh_clone(tmp_path: Path) -> None:
    """examples/megaphone.yml as a fresh clone has it, run from another folder."""
    clone = tmp_path / "clone"
    (clone / "examples").mkdir(parents=True)
    for name in ("megaphone.yml", "api.token.example"):
        shutil.copy(ROOT / "examples" / name, clone / "examples" / name)
    token = (clone / "examples" / "api.token.example").read_text().strip()
    checked = subprocess.run(probewatch_argv("check", "--config.file=examples/megaphone.yml"),
                             capture_output=True, text=True, cwd=clone, timeout=60)
    assert checked.returncode == 0, checked.stderr
    with sample_service(BAR_DOC) as url, serve(clone / "examples" / "megaphone.yml") as pw:
        via_api = requests.put(f"{pw.url}/api/v1/probes/bar", timeout=10,
                               headers={"Authorization": f"Bearer {token}"},
                               data=json.dumps({"kind": "json", "target": url}))
        assert via_api.status_code == 201, via_api.text
        assert add(pw, "foo", url).status_code == 201  # loopback: no token, as with Megaphone
        assert check_list(pw) == {"bar": url, "foo": url}
    stored = json.loads((clone / "examples" / "registered-probes.json").read_text())
    assert sorted(stored["probes"]) == ["bar", "foo"]
