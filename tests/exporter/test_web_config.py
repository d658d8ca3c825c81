"""--web.config.file (exporter/webconfig.py): TLS, client certificates, basic auth and headers,
checked by `probewatch check` and applied by `probewatch serve`, scraped by a real Prometheus."""

from __future__ import annotations

import os
import re
import resource
import socket
import ssl
import subprocess
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.alerting_stack import get_json, serving
from tests.exporter.exporter_process import Running, serve
from tests.support import ROOT, missing, probewatch_argv, require_binary, self_signed_certificate, wait_for

CONFIG = """
defaults: {period: 500ms, timeout: 400ms}
probes:
  - {name: cmd, kind: command, command: {argv: ["true"]}}
"""
PASSWORD = "correct horse"
# Cost 4 keeps the tests quick; the server accepts any cost bcrypt does.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(probewatch_argv("check", *args), capture_output=True, text=True,
                          cwd=ROOT, timeout=30)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_check_accepts_a_valid_web_config(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    web = write(tmp_path / "web.yml", f"""
        tls_server_config:
          cert_file: {cert.name}
          key_file: {key.name}
          min_version: TLS13
        http_server_config:
          headers: {{X-Frame-Options: deny, Strict-Transport-Security: max-age=31536000}}
        basic_auth_users:
          prometheus: {HASH}
        """)
    done = subprocess.run(probewatch_argv("check", f"--web.config.file={web}"), capture_output=True,
                          text=True, cwd=tmp_path, timeout=30)
    assert (done.returncode, done.stdout) == (0, f"{web}: OK\n"), done.stderr


def test_check_names_file_line_and_key_of_every_problem(tmp_path: Path) -> None:
    cert, _key = self_signed_certificate(tmp_path)
    web = write(tmp_path / "web.yml", f"""
        tls_server_config:
          cert_file: {cert.name}
          key_file: missing.key
          client_auth_type: RequireAnyClientCert
          min_version: TLS9
        http_server_config:
          headers:
            X-Frame-Options: allow-all
            Server: nginx
        basic_auth_users:
          admin: hunter2
        tls_server_confg: {{}}
        """)
    done = check(f"--web.config.file={web}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    for expected in (
        f"{web}:12: tls_server_confg: unknown key (did you mean 'tls_server_config'?)",
        f"{web}:5: tls_server_config.min_version: 'TLS9' is not one of TLS10, TLS11, TLS12, TLS13",
        f"{web}:4: tls_server_config.client_auth_type: RequireAnyClientCert accepts unverified",
        f"{web}:8: http_server_config.headers.X-Frame-Options: 'allow-all' is not one of deny, sameorigin",
        f"{web}:9: http_server_config.headers.Server: cannot be set here",
        f"{web}:11: basic_auth_users.admin: must be a bcrypt hash",
        f"{web}:3: tls_server_config.key_file: {tmp_path / 'missing.key'}: no such file",
    ):
        assert expected in done.stderr, done.stderr
    assert "7 problem(s) found" in done.stderr
    lines = [int(line.split(":")[1]) for line in done.stderr.splitlines() if line.startswith(str(web))]
    assert lines == sorted(lines)

    write(web, f"""
        tls_server_config:
          cert_file: {cert.name}
          key_file: nowhere.key
        """)
    done = check(f"--web.config.file={web}")
    assert f"{web}:3: tls_server_config.key_file: {tmp_path / 'nowhere.key'}: no such file" in done.stderr
    write(web, f"""
        tls_server_config:
          cert_file: {cert.name}
          key_file: {cert.name}
          client_auth_type: RequireAndVerifyClientCert
        """)
    done = check(f"--web.config.file={web}")
    assert f"{web}:4: tls_server_config.client_ca_file: is required with client_auth_type" in done.stderr
    assert f"{web}:2: tls_server_config.cert_file: cannot load the certificate and key" in done.stderr
    write(web, "tls_server_config: [a\n")
    assert f"{web}:2: invalid YAML" in check(f"--web.config.file={web}").stderr


def test_serve_refuses_a_bad_web_config_without_a_traceback(tmp_path: Path) -> None:
    config = write(tmp_path / "probewatch.yml", CONFIG)
    web = write(tmp_path / "web.yml", "basic_auth_users: {admin: plain}\n")
    done = subprocess.run(probewatch_argv("serve", f"--config.file={config}", f"--web.config.file={web}",
                                          "--web.listen-address=127.0.0.1:0"),
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{web}:1: basic_auth_users.admin: must be a bcrypt hash" in done.stderr


def test_basic_auth_and_headers_apply_to_every_endpoint(tmp_path: Path) -> None:
    config = write(tmp_path / "probewatch.yml", CONFIG)
    web = write(tmp_path / "web.yml", f"""
        http_server_config:
          headers: {{X-Content-Type-Options: nosniff, Content-Security-Policy: "default-src 'self'"}}
        basic_auth_users:
          prometheus: {HASH}
        """)
    auth = ("prometheus", PASSWORD)

    def ready(pw: Running) -> bool:
        try:
            return requests.get(pw.url + "/-/ready", auth=auth, timeout=5).status_code == 200
        except OSError:
            return False

    with serve(config, f"--web.config.file={web}", ready=ready) as pw:
        # /status answers 503 until the probe has run once: wait for its first result.
        wait_for(lambda: requests.get(pw.url + "/status", auth=auth, timeout=5).status_code == 200, 15,
                 what="the probe's first run")
        for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/status", "/api/v1/probes", "/nowhere"):
            anonymous = requests.get(pw.url + path, timeout=10)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["WWW-Authenticate"].startswith("Basic"), path
            assert anonymous.headers["X-Content-Type-Options"] == "nosniff", path
            wrong = requests.get(pw.url + path, auth=("prometheus", "wrong"), timeout=10)
            assert wrong.status_code == 401, path
            unknown = requests.get(pw.url + path, auth=("nobody", PASSWORD), timeout=10)
            assert unknown.status_code == 401, path
            right = requests.get(pw.url + path, auth=auth, timeout=10)
            # /status may say 503 if a run fails on a loaded machine: what matters is that auth let it through.
            wanted = {"/nowhere": (404,), "/status": (200, 503)}.get(path, (200,))
            assert right.status_code in wanted, path
            assert right.headers["Content-Security-Policy"] == "default-src 'self'", path
        garbage = requests.get(pw.url + "/metrics", headers={"Authorization": "Basic !!!"}, timeout=10)
        assert garbage.status_code == 401
        assert "Traceback" not in pw.output()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    server_cert, server_key = self_signed_certificate(tmp_path, common_name="probewatch server",
                                                      prefix="server-")
    client_cert, client_key = self_signed_certificate(tmp_path, common_name="prometheus",
                                                      prefix="client-")
    other_cert, other_key = self_signed_certificate(tmp_path, common_name="stranger", prefix="other-")
    return {"server_cert": server_cert, "server_key": server_key, "client_cert": client_cert,
            "client_key": client_key, "other_cert": other_cert, "other_key": other_key}


def test_prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth(
        tmp_path: Path, tls_files: dict[str, Path]) -> None:
    binary = require_binary("prometheus")
    files = tls_files
    config = write(tmp_path / "probewatch.yml", CONFIG)
    web = write(tmp_path / "web.yml", f"""
        tls_server_config:
          cert_file: {files['server_cert'].name}
          key_file: {files['server_key'].name}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {files['client_cert'].name}
          min_version: TLS13
        http_server_config:
          headers: {{X-Frame-Options: deny}}
        basic_auth_users:
          prometheus: {HASH}
        """)
    ca = str(files["server_cert"])
    client = (str(files["client_cert"]), str(files["client_key"]))
    auth = ("prometheus", PASSWORD)

    def ready(pw: Running) -> bool:
        try:
            return requests.get(pw.url + "/-/ready", auth=auth, verify=ca, cert=client,
                                timeout=5).status_code == 200
        except OSError:
            return False

    with serve(config, f"--web.config.file={web}", "--log.level=debug", scheme="https",
               ready=ready) as pw:
        metrics = requests.get(pw.url + "/metrics", auth=auth, verify=ca, cert=client, timeout=10)
        assert metrics.status_code == 200 and "probewatch_build_info" in metrics.text
        assert metrics.headers["X-Frame-Options"] == "deny"
        wrong = requests.get(pw.url + "/metrics", auth=("prometheus", "nope"), verify=ca, cert=client,
                             timeout=10)
        assert wrong.status_code == 401
        for stranger in (None, (str(files["other_cert"]), str(files["other_key"]))):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(pw.url + "/metrics", auth=auth, verify=ca, cert=stranger, timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP to the TLS port
            requests.get(pw.url.replace("https:", "http:") + "/metrics", timeout=10)
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(*client)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, OSError)):  # below min_version
            urllib.request.urlopen(pw.url + "/-/healthy", context=context, timeout=10)

        address = pw.url.removeprefix("https://")
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{
                "job_name": "probewatch", "scheme": "https",
                "tls_config": {"ca_file": ca, "cert_file": client[0], "key_file": client[1]},
                "basic_auth": {"username": "prometheus", "password": PASSWORD},
                "static_configs": [{"targets": [address]}],
            }],
        }))
        argv = [binary, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'data'}"]
        with serving(tmp_path, "prometheus", argv) as prom:

            def scraped() -> bool:
                query = urllib.parse.urlencode({"query": 'probewatch_probe_up{probe="cmd"} == 1'})
                result = get_json(f"{prom}/api/v1/query?{query}")["data"]["result"]
                return bool(result)

            wait_for(scraped, 30, interval=0.5, what="Prometheus to scrape probewatch over TLS")
            targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
        # Prometheus always asks for gzip; the exporter answered its scrapes compressed.
        scrapes = re.findall(r"path=/metrics status=200 .*encoding=(\S+) .*user_agent=\"?Prometheus",
                             pw.output())
        assert scrapes and set(scrapes) == {"gzip"}, pw.output()[-2000:]
        assert "Traceback" not in pw.output()


def _low_open_files_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_1100_connections_stuck_before_the_tls_handshake_lock_nobody_out(
        tmp_path: Path, tls_files: dict[str, Path]) -> None:
    stuck = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < stuck + 200:
        missing(f"{stuck + 200} open files for this test process (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    config = write(tmp_path / "probewatch.yml", CONFIG)
    web = write(tmp_path / "web.yml", f"""
        tls_server_config:
          cert_file: {tls_files['server_cert'].name}
          key_file: {tls_files['server_key'].name}
        """)
    ca = str(tls_files["server_cert"])

    def ready(pw: Running) -> bool:
        try:
            return requests.get(pw.url + "/-/ready", verify=ca, timeout=5).status_code == 200
        except OSError:
            return False

    sockets: list[socket.socket] = []
    try:
        with serve(config, f"--web.config.file={web}", scheme="https", ready=ready,
                   preexec_fn=_low_open_files_limit) as pw:
            port = int(pw.url.rsplit(":", 1)[1])
            deadline = time.monotonic() + 60
            for _ in range(stuck):  # connected, never a ClientHello
                assert time.monotonic() < deadline, "connecting took too long"
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            started = time.monotonic()
            metrics = requests.get(pw.url + "/metrics", verify=ca, timeout=10)
            assert metrics.status_code == 200 and "probewatch_build_info" in metrics.text
            assert time.monotonic() - started < 5
            fds = len(os.listdir(f"/proc/{pw.proc.pid}/fd"))
            assert fds < 1024 - 100, f"{fds} open files: the connection cap did not hold"
            runs = pw_value(metrics.text, "probewatch_probe_runs_total")
            wait_for(lambda: pw_value(requests.get(pw.url + "/metrics", verify=ca, timeout=10).text,
                                      "probewatch_probe_runs_total") > runs + 3,
                     15, what="command probes to keep running")
            assert "Too many open files" not in pw.output() and "Traceback" not in pw.output()
    finally:
        for sock in sockets:
            sock.close()


def pw_value(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_a_flood_of_bad_passwords_is_summed_up_not_logged_line_by_line(tmp_path: Path) -> None:
    config = write(tmp_path / "probewatch.yml", CONFIG)
    web = write(tmp_path / "web.yml", f"basic_auth_users: {{prometheus: {HASH}}}\n")

    def ready(pw: Running) -> bool:
        try:
            return requests.get(pw.url + "/-/ready", auth=("prometheus", PASSWORD), timeout=5).status_code == 200
        except OSError:
            return False

    with serve(config, f"--web.config.file={web}", ready=ready) as pw:
        with requests.Session() as session:
            for _ in range(100):
                assert session.get(pw.url + "/metrics", auth=("prometheus", "wrong"), timeout=10).status_code == 401

        def counted() -> tuple[int, int]:
            text = pw.output()
            full = text.count('msg="request refused: bad credentials"')
            summed = sum(int(n) for n in re.findall(r'msg="refused (\d+) more requests? \(bad credentials\)', text))
            return full, summed

        wait_for(lambda: sum(counted()) == 100, 20, what="every refusal logged or summed up")
        full, _ = counted()
        assert full <= 3, pw.output()  # one line per 10s window, not one per request
