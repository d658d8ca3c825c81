"""`probewatch import moniteur|cmdchk|megaphone` on the seeds' own examples.

Each translation is checked with `probewatch check`, then its probes are run
against loopback stand-ins: `probewatch probe NAME` for Moniteur's tests and
Megaphone's checks, a real `probewatch serve` for Cmdchk's /status.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.exporter.exporter_process import serve
from tests.exporter.test_megaphone import BAR_DOC, FOO_DOC, sample_service
from tests.probes.servers import TcpServer, closed_port
from tests.probes.test_sip import sipp
from tests.support import ROOT, free_port, probewatch_argv, require_binary, wait_for

# Moniteur's README sections (test.cfg and notifier.cfg), as written there,
# with each address a loopback stand-in ({...} is filled in by the test).
MONITEUR_TESTS = """\
; Definition of a "ping" test
; The name of the test does not matter
[Test_Ping_10.0.0.10]
script=ping.py
; Here we ping the host 10.0.0.10 with a timeout of 1000 ms
arguments=127.0.0.1, 1000
period=10
active=True
aggregate=20

; A SIP connection test
[SIP_localhost_5080]
script=sip.py
arguments=sip:127.0.0.1:{sip_port}, port={sip_local}, timeout=5
period=10
aggregate=100

[CONNECT_10.0.0.11_80]
script=connect.py
arguments=127.0.0.1, {plain_port}
period=10
aggregate=50

[Test_HTTP_200]
script=connect.py
arguments=127.0.0.1, {http_port}, hello_message=GET / HTTP/1.0\\r\\n\\r\\n, success_message=HTTP/1.1 200 OK

[Test_POP3]
script=connect.py
arguments=127.0.0.1, {pop3_port}, success_message=+OK POP3, bye_message=QUIT\\n
active=False

[Test_Unknown_Script]
script=dns.py
arguments=127.0.0.1
"""

MONITEUR_NOTIFIER = """\
[EMAIL]
; The name of the script to run. Notifier are stored in the "notifier" directory.
script=mailer.py
server_host=127.0.0.1
server_port={smtp_port}
auth_required=True
tls_required=True
ssl_required=False
login=moniteur-account@example.invalid
password=PASSWORD
from="Moniteur" <moniteur-account@example.invalid>
to="John Doe" <Jd@example.invalid>
subject=Moniteur message (%%(code)s) %%(test)s - %%(date)s
body=Moniteur test report
\tTest name:%%(test)s
\tDate:%%(date)s
\tTest return code:%%(code)s
\tMessage repeated:%%(repeat)s
\tMessage:
\t%%(message)s
"""


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(probewatch_argv(*args), capture_output=True, text=True, cwd=cwd, timeout=60)


def check_passes(config: Path) -> None:
    checked = run("check", f"--config.file={config}")
    assert checked.returncode == 0, checked.stderr + checked.stdout


def probes_of(config: Path) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in yaml.safe_load(config.read_text())["probes"]}


def http_200(conn: socket.socket) -> bytes:
    request = b""
    while not request.endswith(b"\r\n\r\n") and (chunk := conn.recv(1024)):
        request += chunk
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return request


def pop3(conn: socket.socket) -> bytes:
    conn.sendall(b"+OK POP3 server ready\r\n")
    said = b""
    while not said.endswith(b"\n") and (chunk := conn.recv(1024)):
        said += chunk
    return said


def test_moniteur_tests_and_notifier_translate_and_run(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    plain, web, mail = TcpServer(lambda c: b""), TcpServer(http_200), TcpServer(pop3)
    with contextlib.ExitStack() as stack:
        for server in (plain, web, mail):
            stack.callback(server.close)
        peer = stack.enter_context(sipp(tmp_path, None, "-m", "1"))  # a SIP UAS answering INVITE
        sip_local = free_port(socket.AF_INET, socket.SOCK_DGRAM)
        (tmp_path / "tests.cfg").write_text(MONITEUR_TESTS.format(
            sip_port=peer.port, sip_local=sip_local, plain_port=plain.port, http_port=web.port,
            pop3_port=mail.port))
        (tmp_path / "notifier.cfg").write_text(MONITEUR_NOTIFIER.format(smtp_port=closed_port()))
        done = run("import", "moniteur", "tests.cfg", "notifier.cfg", "-o", "probewatch.yml",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "note: tests.cfg:" in done.stderr and "script=dns.py has no probewatch kind" in done.stderr
        config = tmp_path / "probewatch.yml"
        check_passes(config)
        probes = probes_of(config)
        assert sorted(probes) == ["CONNECT_10.0.0.11_80", "SIP_localhost_5080", "Test_HTTP_200",
                                  "Test_POP3", "Test_Ping_10.0.0.10"]
        assert probes["Test_Ping_10.0.0.10"] == {"name": "Test_Ping_10.0.0.10", "kind": "icmp",
                                                 "target": "127.0.0.1", "period": "10s",
                                                 "active": True, "icmp": {"reply_timeout": "1s"},
                                                 "labels": {"renotify": "20"}}  # aggregate=20: numbered reminders
        assert probes["SIP_localhost_5080"]["timeout"] == "5s"
        assert probes["SIP_localhost_5080"]["sip"] == {"method": "INVITE", "success_state": "CONFIRMED",
                                                       "local_port": sip_local}
        assert probes["Test_POP3"]["active"] is False
        assert yaml.safe_load(config.read_text())["defaults"] == {"failures": 1}

        # The probes that came out, against the stand-ins.
        for name in ("CONNECT_10.0.0.11_80", "Test_HTTP_200", "Test_POP3", "Test_Ping_10.0.0.10",
                     "SIP_localhost_5080"):
            ran = run("probe", name, f"--config.file={config}")
            assert ran.returncode == 0, (name, ran.stdout, ran.stderr)
        assert web.received == [b"GET / HTTP/1.0\r\n\r\n"]
        assert mail.received == [b"QUIT\n"]  # bye_message, sent before closing
        assert "reached CONFIRMED" in ran.stdout
        assert f"127.0.0.1:{sip_local}" in peer.received("INVITE")  # port= became local_port

    # notifier.cfg: Alertmanager's config, its password in a file of its own.
    am_file = tmp_path / "alertmanager.yml"
    checked = subprocess.run([amtool, "check-config", str(am_file)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    am = yaml.safe_load(am_file.read_text())
    assert "PASSWORD" not in am_file.read_text()
    password = tmp_path / am["global"]["smtp_auth_password_file"]
    assert password.read_text() == "PASSWORD" and password.stat().st_mode & 0o077 == 0
    assert am["global"]["smtp_require_tls"] is True
    assert am["global"]["smtp_auth_username"] == "moniteur-account@example.invalid"
    routes = {r["matchers"][0]: (r["group_interval"], r["repeat_interval"]) for r in am["route"]["routes"]}
    # aggregate x period, less half a group_interval: Alertmanager counts from the end of a send.
    assert routes == {'probe=~"Test_Ping_10\\.0\\.0\\.10"': ("10s", "195s"),     # 20 x 10s - 5s
                      'probe=~"CONNECT_10\\.0\\.0\\.11_80"': ("10s", "495s"),    # 50 x 10s - 5s
                      'probe=~"SIP_localhost_5080"': ("10s", "995s")}           # 100 x 10s - 5s
    email = am["receivers"][0]["email_configs"][0]
    assert email["to"] == '"John Doe" <Jd@example.invalid>'
    assert email["headers"]["Subject"].startswith("Moniteur message ({{ .CommonAnnotations.return_code }}) "
                                                  "{{ .CommonLabels.probe }} - ")


def test_moniteur_unreadable_input_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "headless.cfg").write_text("; a comment\nscript=ping.py\n[a]\n")
    (tmp_path / "twice.cfg").write_text("[a]\nscript=ping.py\n\n[a]\nscript=ping.py\n")
    for name, says in (("headless.cfg", "headless.cfg:2:"), ("twice.cfg", "twice.cfg:4:"),
                       ("missing.cfg", "missing.cfg: cannot be read")):
        done = run("import", "moniteur", name, cwd=tmp_path)
        assert done.returncode == 2, (name, done.stdout)
        assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.stdout == ""


# Cmdchk's config format (its README): later files override earlier ones.
CMDCHK_BASE = {"user": "nobody", "port": 9200, "log_location": "/var/log/appsrvchk/appsrvchk.log",
               "check_list": {"/bin/true": []}}
CMDCHK_SITE = {"check_list": {"/bin/true": [], "test -d /tmp": [0, 1], "exit 3": [3]}}


def test_cmdchk_files_merge_in_order_and_serve_its_load_balancer_status(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(CMDCHK_BASE, indent=1))
    (tmp_path / "site.json").write_text(json.dumps(CMDCHK_SITE, indent=1))
    done = run("import", "cmdchk", "base.json", "site.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "user='nobody'" in done.stderr and "check_list replaces the one from base.json" in done.stderr
    assert ("--web.listen-address=:9200 --log.file=/var/log/appsrvchk/appsrvchk.log"
            in done.stderr)
    config = tmp_path / "probewatch.yml"
    config.write_text(done.stdout)
    check_passes(config)
    probes = probes_of(config)
    assert [p["command"]["argv"] for p in probes.values()] == [["/bin/true"], ["test -d /tmp"], ["exit 3"]]
    assert [p["command"]["ok_codes"] for p in probes.values()] == [[], [0, 1], [3]]

    # Whatever the periods, /status reflects every check within a few seconds of a start.
    config.write_text(done.stdout.replace("period: 10s", "period: 1h"))
    with serve(config) as pw:
        started = time.monotonic()
        wait_for(lambda: requests.get(f"{pw.url}/status", timeout=10).status_code == 200, 8,
                 what="every check to have run")
        assert time.monotonic() - started < 5
        options = requests.options(f"{pw.url}/status", timeout=10)
        assert options.status_code == 200 and options.json()["status"] == "OK"
        assert requests.head(f"{pw.url}/status", timeout=10).status_code == 200
        listed = requests.get(f"{pw.url}/api/v1/probes/true", timeout=10).json()
        assert dt_seconds_from_now(listed["next_run"]) > -1  # the slot itself is kept

    (tmp_path / "down.json").write_text(json.dumps({"check_list": {"exit 1": []}}))
    down = run("import", "cmdchk", "base.json", "down.json", "-o", "down.yml", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    with serve(tmp_path / "down.yml") as pw:
        wait_for(lambda: requests.options(f"{pw.url}/status", timeout=10).json()["message"]
                 .startswith("exit:Critical:"), 8, what="the failing check to show")
        assert requests.options(f"{pw.url}/status", timeout=10).status_code == 503
        assert requests.get(f"{pw.url}/status", timeout=10).status_code == 503


def dt_seconds_from_now(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp() - time.time()


def test_cmdchk_unreadable_input_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(json.dumps(CMDCHK_BASE))
    (tmp_path / "comma.json").write_text('{"port": 9200,\n "check_list": {"a": [0],}\n}\n')
    (tmp_path / "codes.json").write_text('{"port": 9200,\n "check_list": {"a": ["zero"]}\n}\n')
    (tmp_path / "port.json").write_text('{\n\n "port": "http"\n}\n')
    for name, says in (("comma.json", "comma.json:2: is not valid JSON"),
                       ("codes.json", "codes.json:2: check_list must be"),
                       ("port.json", "port.json:3: port must be"),
                       ("gone.json", "gone.json: cannot be read")):
        done = run("import", "cmdchk", "ok.json", name, cwd=tmp_path)
        assert done.returncode == 2, (name, done.stdout)
        assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_megaphone_checks_import_from_its_check_list(tmp_path: Path) -> None:
    with sample_service(BAR_DOC) as bar_url, sample_service(FOO_DOC) as foo_url:
        # A running Megaphone, as far as /check/list goes: probewatch's own, after the session.
        megaphone_config = tmp_path / "megaphone" / "probewatch.yml"
        megaphone_config.parent.mkdir()
        megaphone_config.write_text("probes: []\n")
        with serve(megaphone_config) as megaphone:
            for check_id, url in (("bar", bar_url), ("foo", foo_url)):
                put = requests.put(f"{megaphone.url}/check/add", timeout=10,
                                   data=json.dumps({"id": check_id, "url": url}))
                assert put.status_code == 201, put.text
            done = run("import", "megaphone", megaphone.url, "-o", "probewatch.yml", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            config = tmp_path / "probewatch.yml"
            check_passes(config)
            assert probes_of(config) == {"bar": {"name": "bar", "kind": "json", "target": bar_url},
                                         "foo": {"name": "foo", "kind": "json", "target": foo_url}}
            bar = run("probe", "bar", f"--config.file={config}")
            assert bar.returncode == 0 and "Everything is groovy man." in bar.stdout, bar.stdout
            foo = run("probe", "foo", f"--config.file={config}")
            assert foo.returncode == 1 and "Houston, I think we have a problem." in foo.stdout

            # Or straight into another running probewatch.
            target = tmp_path / "target" / "probewatch.yml"
            target.parent.mkdir()
            target.write_text("probes: []\n")
            with serve(target) as other:
                pushed = run("import", "megaphone", megaphone.url, "--register", other.url)
                assert pushed.returncode == 0, pushed.stderr
                assert "2 of 2 checks registered" in pushed.stderr
                listed = requests.get(f"{other.url}/check/list", timeout=10).json()
                assert listed == {"bar": bar_url, "foo": foo_url}


def test_megaphone_unreadable_list_is_an_error(tmp_path: Path) -> None:
    with sample_service(BAR_DOC) as url:  # answers 404 on /check/list
        done = run("import", "megaphone", url.removesuffix("/q/status"), cwd=tmp_path)
        assert done.returncode == 2 and "HTTP 404" in done.stderr, done.stderr
    refused = run("import", "megaphone", f"http://127.0.0.1:{closed_port()}", cwd=tmp_path)
    assert refused.returncode == 2 and "cannot be read" in refused.stderr
    assert "Traceback" not in refused.stderr
