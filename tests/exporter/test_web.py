"""The exporter's HTTP server (exporter/web.py) against hostile and heavy clients, on loopback.

Each test starts the real `probewatch serve` and talks to it over real sockets:
raw bytes where a well-behaved client library would refuse to send them.
"""

from __future__ import annotations

import gzip
import http.client
import os
import resource
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from tests.exporter.exporter_process import Running, serve
from tests.support import missing, wait_for

CONFIG = """
defaults: {period: 200ms, timeout: 150ms}
probes:
  - {name: cmd, kind: command, command: {argv: ["true"]}}
"""
API_CONFIG = """
api: {token_file: token, state_file: registered.json, allow_command: true}
defaults: {period: 30s, timeout: 1s}
probes:
  - {name: cmd, kind: command, command: {argv: ["true"]}}
"""
TOKEN = "web-test-token"


def config_file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "probewatch.yml"
    path.write_text(text)
    (tmp_path / "token").write_text(TOKEN + "\n")
    return path


def port_of(pw: Running) -> int:
    return int(pw.url.rsplit(":", 1)[1])


def exchange(pw: Running, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; return everything the server sends until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port_of(pw)), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out


def no_traceback(pw: Running) -> None:
    assert "Traceback" not in pw.output(), pw.output()


def test_a_request_with_both_lengths_is_refused_and_smuggles_nothing(tmp_path: Path) -> None:
    with serve(config_file(tmp_path), "--log.level=debug") as pw:
        reply = exchange(pw, b"POST /-/healthy HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                             b"GET /-/ready HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reply.startswith(b"HTTP/1.0 400 ") or reply.startswith(b"HTTP/1.1 400 "), reply
        assert reply.count(b"HTTP/1.") == 1, "a second (smuggled) request was answered"
        assert b"probewatch is ready" not in reply
        no_traceback(pw)


def test_bad_content_length_answers_400_without_a_traceback(tmp_path: Path) -> None:
    with serve(config_file(tmp_path), "--log.level=debug") as pw:
        for value in (b"abc", b"-1", b"1, 2", b"99999999999999999999999"):
            reply = exchange(pw, b"POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: " + value
                             + b"\r\n\r\n")
            assert reply.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), (value, reply)
            assert b"bad request" in reply
        assert pw.get("/-/healthy")[0] == 200
        no_traceback(pw)
        assert 'msg="bad request"' in pw.output()


def test_large_bodies_answer_413(tmp_path: Path) -> None:
    with serve(config_file(tmp_path)) as pw:
        declared = exchange(pw, b"PUT /api/v1/probes/x HTTP/1.1\r\nHost: a\r\n"
                                b"Content-Length: 2000000\r\n\r\n", timeout=3)
        assert declared.startswith(b"HTTP/1.1 413 "), declared
        chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
        chunked = exchange(pw, b"PUT /api/v1/probes/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                               b"\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
        assert chunked.startswith(b"HTTP/1.1 413 "), chunked[:200]
        no_traceback(pw)


def test_routes_methods_and_the_server_header(tmp_path: Path) -> None:
    with serve(config_file(tmp_path)) as pw:
        get = requests.get(pw.url + "/-/healthy", timeout=10)
        head = requests.head(pw.url + "/-/healthy", timeout=10)
        assert get.text == "probewatch is healthy\n"
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["Content-Length"]) == len(get.content)
        assert requests.head(pw.url + "/metrics", timeout=10).status_code == 200
        assert get.headers["Server"] == f"probewatch/{__version__}"
        assert "Python" not in get.headers["Server"] and "aiohttp" not in get.headers["Server"]
        options = requests.options(pw.url + "/metrics", timeout=10)
        assert (options.status_code, options.headers["Allow"]) == (204, "GET, HEAD, OPTIONS")
        wrong = requests.delete(pw.url + "/metrics", timeout=10)
        assert (wrong.status_code, wrong.text) == (405, "method DELETE not allowed\n")
        assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"
        missing_page = requests.get(pw.url + "/nowhere", timeout=10)
        assert (missing_page.status_code, missing_page.text) == (404, "not found\n")
        bad = exchange(pw, b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
        assert f"Server: probewatch/{__version__}\r\n".encode() in bad and b"Python" not in bad


def test_metrics_are_gzipped_when_the_client_accepts_it(tmp_path: Path) -> None:
    with serve(config_file(tmp_path)) as pw:
        wait_for(lambda: pw.value("probewatch_probe_up", probe="cmd") == 1, what="a first run")
        conn = http.client.HTTPConnection("127.0.0.1", port_of(pw), timeout=10)
        try:
            conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.getheader("Content-Encoding") == "gzip"
            assert resp.getheader("Vary") == "Accept-Encoding"
            assert int(resp.getheader("Content-Length") or 0) == len(raw)
            text = gzip.decompress(raw).decode()
            assert len(raw) < len(text) / 3
            names = {f.name for f in text_string_to_metric_families(text)}
            assert "probewatch_probe_up" in names
            for refusal in ("gzip;q=0", "identity", "br", ""):
                conn.request("GET", "/metrics", headers={"Accept-Encoding": refusal})
                resp = conn.getresponse()
                body = resp.read()
                assert resp.getheader("Content-Encoding") is None, refusal
                assert body.startswith(b"# HELP"), refusal
        finally:
            conn.close()


def test_reload_over_http_needs_the_lifecycle_flag(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with serve(config, "--config.watch-interval=0") as pw:
        for method in ("POST", "PUT"):
            resp = requests.request(method, pw.url + "/-/reload", timeout=10)
            assert resp.status_code == 403
            assert "--web.enable-lifecycle" in resp.text
    with serve(config, "--config.watch-interval=0", "--web.enable-lifecycle") as pw:
        assert requests.put(pw.url + "/-/reload", timeout=10).text == "config reloaded\n"


def test_request_lines_are_logged_at_debug_only(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with serve(config) as pw:
        for _ in range(5):
            pw.get("/metrics")
        assert "msg=request" not in pw.output()
    with serve(config, "--log.level=debug") as pw:
        pw.get("/-/healthy")
        wait_for(lambda: "level=debug logger=probewatch.web msg=request method=GET path=/-/healthy status=200"
                 in pw.output(), 5, what="the request line")


def test_200_concurrent_api_writes_all_succeed(tmp_path: Path) -> None:
    writers = 200
    with serve(config_file(tmp_path, API_CONFIG)) as pw:
        gate = threading.Barrier(writers, timeout=30)

        def put(i: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port_of(pw), timeout=60)
            try:
                body = b'{"kind": "command", "period": "1h", "command": {"argv": ["true"]}}'
                gate.wait()
                conn.request("PUT", f"/api/v1/probes/w{i}", body=body,
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "application/json"})
                return conn.getresponse().status
            finally:
                conn.close()

        with ThreadPoolExecutor(writers) as pool:
            statuses = list(pool.map(put, range(writers)))  # a reset would raise here
        assert statuses == [201] * writers
        listed = requests.get(pw.url + "/api/v1/probes", timeout=30).json()["probes"]
        assert {p["name"] for p in listed} >= {f"w{i}" for i in range(writers)}


def _low_open_files_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_1100_idle_connections_starve_neither_metrics_nor_command_probes(tmp_path: Path) -> None:
    idle = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < idle + 200:
        missing(f"{idle + 200} open files for this test process (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    sockets: list[socket.socket] = []
    try:
        with serve(config_file(tmp_path), preexec_fn=_low_open_files_limit) as pw:
            assert "max_connections=512 " in pw.output()  # half of 1,024 open files
            runs = pw.value("probewatch_probe_runs_total", probe="cmd") or 0
            deadline = time.monotonic() + 60
            for i in range(idle):
                assert time.monotonic() < deadline, "connecting took too long"
                sock = socket.create_connection(("127.0.0.1", port_of(pw)), timeout=10)
                if i % 2:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")  # headers never finished
                sockets.append(sock)
            started = time.monotonic()
            status, body, _ = pw.get("/metrics")
            assert status == 200 and "probewatch_build_info" in body
            assert time.monotonic() - started < 5
            fds = len(os.listdir(f"/proc/{pw.proc.pid}/fd"))
            assert fds < 1024 - 100, f"{fds} open files: the connection cap did not hold"
            wait_for(lambda: (pw.value("probewatch_probe_runs_total", probe="cmd") or 0) > runs + 5,
                     15, what="command probes to keep running")
            assert pw.value("probewatch_probe_up", probe="cmd") == 1
            assert "Too many open files" not in pw.output()
    finally:
        for sock in sockets:
            sock.close()


def test_half_sent_headers_are_cut_off(tmp_path: Path) -> None:
    with serve(config_file(tmp_path)) as pw, \
            socket.create_connection(("127.0.0.1", port_of(pw)), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        try:
            closed = sock.recv(100) == b""
        except ConnectionResetError:
            closed = True
        waited = time.monotonic() - started
        assert closed and 8 < waited < 20, (closed, waited)


def test_over_the_cap_with_every_connection_busy_the_next_gets_503_at_once(tmp_path: Path) -> None:
    cap = 16  # the smallest cap probewatch takes
    with serve(config_file(tmp_path), f"--web.max-connections={cap}") as pw:
        busy = []
        try:
            for _ in range(cap):  # each waits for a body that comes late: its handler is busy
                sock = socket.create_connection(("127.0.0.1", port_of(pw)), timeout=30)
                sock.sendall(b"PUT /api/v1/probes/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
                busy.append(sock)
            time.sleep(0.5)
            started = time.monotonic()
            refused = exchange(pw, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            assert refused.startswith(b"HTTP/1.1 503 ") and b"too many connections" in refused, refused
            assert time.monotonic() - started < 2
            late = busy[0].recv(1000)  # the body timeout answers the first one
            assert late.startswith(b"HTTP/1.1 408 "), late
        finally:
            for sock in busy:
                sock.close()
        wait_for(lambda: pw.get("/-/healthy")[0] == 200, 15, what="the server to serve again")


@pytest.mark.parametrize("flag", ["--web.max-connections=0", "--web.max-connections=x"])
def test_max_connections_must_be_a_positive_number(tmp_path: Path, flag: str) -> None:
    import subprocess

    from tests.support import ROOT, probewatch_argv

    proc = subprocess.run(probewatch_argv("serve", f"--config.file={config_file(tmp_path)}", flag),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 2 and "--web.max-connections" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_routes_that_check_a_bearer_token_themselves_pass_basic_auth_by(tmp_path: Path) -> None:
    """The status API's writes carry a bearer token in Authorization, where basic auth would go."""
    import bcrypt

    from exporter.routing import Request, Response, Router
    from exporter.web import WebServer
    from exporter.webconfig import parse_web_config

    def write(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer t0ken":
            return Response.text("bad token\n", 401)
        return Response.text("written\n")

    router = Router()
    router.add("PUT", "/things/(?P<name>[^/]+)", write, bearer_auth=True)
    router.add("POST", "/-/reload", lambda r: Response.text("reloaded\n"))
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    config = parse_web_config(f"basic_auth_users: {{admin: '{hashed}'}}\n", str(tmp_path / "web.yml"))
    server = WebServer(router, "127.0.0.1", 0, config)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        bearer = {"Authorization": "Bearer t0ken"}
        assert requests.put(url + "/things/a", headers=bearer, timeout=10).text == "written\n"
        wrong = requests.put(url + "/things/a", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert (wrong.status_code, wrong.text) == (401, "bad token\n")
        assert requests.put(url + "/things/a", timeout=10).status_code == 401  # basic auth still asked
        assert requests.post(url + "/-/reload", headers=bearer, timeout=10).status_code == 401
        assert requests.post(url + "/-/reload", auth=("admin", "pw"), timeout=10).text == "reloaded\n"
    finally:
        server.stop()
