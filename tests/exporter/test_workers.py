"""serve --workers 2: real worker processes behind one /metrics, against real loopback listeners."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.deploy.alerting_stack import get_json, serving
from tests.exporter.exporter_process import Running, serve
from tests.probes.servers import TcpServer
from tests.support import ROOT, pid_running, probewatch_argv, require_binary, wait_for

PROBES = 300


@pytest.fixture(scope="module")
def listeners() -> Iterator[list[TcpServer]]:
    servers = [TcpServer(lambda conn: b"") for _ in range(6)]
    yield servers
    for server in servers:
        server.close()


def _config(servers: list[TcpServer], count: int = PROBES, prefix: str = "p", group: str = "a") -> str:
    lines = ["defaults: {period: 2s, timeout: 1s}", "probes:"]
    lines += [f'  - {{name: {prefix}{i:03d}, kind: tcp, target: "{servers[i % len(servers)].target}", '
              f"labels: {{group: {group}}}}}" for i in range(count)]
    return "\n".join(lines) + "\n"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(p) for p in fh.read().split()]
        except OSError:
            pass
    return sorted(out)


def _page(pw: Running, gzip_ok: bool = False) -> tuple[str, dict[str, str]]:
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    request = urllib.request.Request(pw.url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=20) as resp:
        body, got = resp.read(), dict(resp.headers)
    if got.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return body.decode(), got


def _probes_of(text: str, family: str = "probewatch_probe_runs_total") -> Counter[str]:
    return Counter(line.split('probe="', 1)[1].split('"', 1)[0]
                   for line in text.splitlines() if line.startswith(family + "{"))


def _every_probe_ran(pw: Running, prefix: str = "p", count: int = PROBES) -> bool:
    text, _ = _page(pw)
    up = _probes_of(text, "probewatch_probe_up")
    return len(up) == count and all(name.startswith(prefix) for name in up)


def test_two_workers_serve_every_probe_once_under_one_header(tmp_path: Path,
                                                            listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners))
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        workers = _children(pw.proc.pid)
        assert len(workers) == 2, f"expected two worker processes, found {workers}"
        wait_for(lambda: _every_probe_ran(pw), 30, what="every probe's first run")
        text, _ = _page(pw)
        runs = _probes_of(text)
        assert sorted(runs) == [f"p{i:03d}" for i in range(PROBES)]
        assert set(runs.values()) == {1}, "a probe appears more than once"
        types = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
        assert types and max(types.values()) == 1, [name for name, n in types.items() if n > 1]
        # Both workers ran probes, and the merged telemetry counts every probe.
        assert pw.value("probewatch_probes", state="active") == PROBES
        assert pw.value("probewatch_worker_up", worker="0") == 1
        assert pw.value("probewatch_worker_up", worker="1") == 1
        assert pw.value("probewatch_probe_up", probe="p000") == 1
        # The merged lag histogram counts the runs of both workers' probes.
        total_runs = sum(v for (n, _), v in pw.samples().items() if n == "probewatch_probe_runs_total")
        lag_count = pw.value("probewatch_scheduler_lag_seconds_count") or 0
        assert lag_count >= PROBES and lag_count >= total_runs - PROBES
        # gzip, as Prometheus asks for it: the same probes, once each.
        zipped, zheaders = _page(pw, gzip_ok=True)
        assert zheaders.get("Content-Encoding") == "gzip"
        assert _probes_of(zipped) == runs
        # The status API reads the states from the workers.
        status, body, _ = pw.get("/api/v1/probes/p123")
        assert status == 200 and '"p123"' in body
        assert pw.get("/-/ready")[0] == 200


def test_prometheus_reads_the_workers_gzip_members(tmp_path: Path, listeners: list[TcpServer]) -> None:
    """Each worker compresses its own families; Go's gzip reader (Prometheus) reads the members
    as one stream, so every probe arrives."""
    binary = require_binary("prometheus")
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners))
    with serve(config, "--workers=2", "--config.watch-interval=0", "--log.level=debug") as pw:
        wait_for(lambda: _every_probe_ran(pw), 30, what="every probe's first run")
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "probewatch",
                                "static_configs": [{"targets": [pw.url.removeprefix("http://")]}]}],
        }))
        argv = [binary, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'data'}"]
        with serving(tmp_path, "prometheus", argv) as prom:

            def counted() -> float | None:
                query = urllib.parse.urlencode({"query": "count(probewatch_probe_up)"})
                result = get_json(f"{prom}/api/v1/query?{query}")["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            assert wait_for(counted, 30, interval=0.5, what="Prometheus to scrape") == PROBES
            targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
        scrapes = re.findall(r"path=/metrics status=200 .*encoding=(\S+) .*user_agent=\"?Prometheus",
                             pw.output())
        assert scrapes and set(scrapes) == {"gzip"}


def test_reload_reaches_every_worker_and_a_bad_config_keeps_them_running(
        tmp_path: Path, listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners))
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        wait_for(lambda: _every_probe_ran(pw), 30, what="every probe's first run")
        config.write_text(_config(listeners, 200, prefix="q", group="b"))
        pw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _every_probe_ran(pw, "q", 200), 30, what="the new probes on both workers")
        text, _ = _page(pw)
        assert not _probes_of(text).keys() & {f"p{i:03d}" for i in range(PROBES)}
        assert pw.value("probewatch_probes", state="active") == 200
        config.write_text("probes:\n  - {name: broken, kind: tcp}\n")  # no target
        pw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: pw.value("probewatch_config_last_reload_successful") == 0, 15,
                 what="the failed reload to show")
        time.sleep(2.5)  # a period: the old probes keep running
        assert _every_probe_ran(pw, "q", 200)
        assert "config reload failed" in pw.output()


def test_a_killed_worker_is_restarted_and_its_probes_come_back(tmp_path: Path,
                                                               listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners))
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        wait_for(lambda: _every_probe_ran(pw), 30, what="every probe's first run")
        first, second = _children(pw.proc.pid)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: sum(pw.value("probewatch_worker_restarts_total", worker=w) or 0
                             for w in ("0", "1")) == 1, 30, what="the restart counted")
        wait_for(lambda: pw.get("/-/ready")[0] == 200, 30, what="ready again")
        wait_for(lambda: _every_probe_ran(pw), 30, what="the killed worker's probes back")
        now = _children(pw.proc.pid)
        assert second in now and first not in now and len(now) == 2
        assert "worker exited; restarting it" in pw.output()


def test_a_stopped_worker_leaves_the_scrape_in_time_and_comes_back(tmp_path: Path,
                                                                   listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners, 100))
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        wait_for(lambda: _every_probe_ran(pw, "p", 100), 30, what="every probe's first run")
        first, _ = _children(pw.proc.pid)
        os.kill(first, signal.SIGSTOP)
        try:
            began = time.monotonic()
            text, _ = _page(pw)
            took = time.monotonic() - began
            assert took < 10, f"the scrape waited {took:.1f}s for the stopped worker"
            partial = _probes_of(text)
            assert 0 < len(partial) < 100 and set(partial.values()) == {1}
        finally:
            os.kill(first, signal.SIGCONT)
        # Its late reply is dropped, not taken for the next one's; it was not restarted.
        wait_for(lambda: _every_probe_ran(pw, "p", 100), 20, what="the worker's probes back")
        assert set(_probes_of(_page(pw)[0]).values()) == {1}
        assert first in _children(pw.proc.pid)
        assert pw.value("probewatch_worker_restarts_total", worker="0") == 0
        assert pw.value("probewatch_worker_restarts_total", worker="1") == 0
        assert "worker slow to answer" in pw.output()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_stops_every_worker(tmp_path: Path, listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners, 40)
                      + f'  - {{name: refused, kind: tcp, target: "127.0.0.1:{_closed_port()}"}}\n')
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        workers = _children(pw.proc.pid)
        assert len(workers) == 2
        # A worker's log lines name it: the refused probe's "probe down" says which worker ran it.
        line = wait_for(lambda: re.search(r'.*msg="probe down" .*probe=refused.*', pw.output()), 15,
                        what="the refused probe's log line")
        assert re.search(r"\bworker=[01]\b", line.group(0)), line.group(0)
        pw.proc.send_signal(signal.SIGTERM)
        assert pw.proc.wait(20) == 0
        wait_for(lambda: not any(pid_running(p) for p in workers), 10, what="the workers to end")


def test_workers_end_when_the_parent_is_killed(tmp_path: Path, listeners: list[TcpServer]) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(_config(listeners, 40))
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        workers = _children(pw.proc.pid)
        assert len(workers) == 2
        pw.proc.send_signal(signal.SIGKILL)
        pw.proc.wait(10)
        # Reparented, they see the end of their channel and stop by themselves.
        wait_for(lambda: not any(pid_running(p) for p in workers), 15, what="the orphaned workers to end")


def test_a_bad_config_fails_as_with_one_process(tmp_path: Path) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("probes:\n  - {name: broken, kind: tcp}\n")
    one = subprocess.run(probewatch_argv("serve", f"--config.file={config}", "--web.listen-address=127.0.0.1:0"),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    two = subprocess.run(probewatch_argv("serve", f"--config.file={config}", "--web.listen-address=127.0.0.1:0",
                                         "--workers=2"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert one.returncode == two.returncode == 2
    assert two.stderr.strip() and two.stderr == one.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "\uff11"])
def test_a_bad_workers_value_is_refused(tmp_path: Path, value: str) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text("probes: []\n")
    done = subprocess.run(probewatch_argv("serve", f"--config.file={config}", f"--workers={value}"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers" in done.stderr and "auto" in done.stderr


def test_registered_probes_and_status_work_with_workers(tmp_path: Path, listeners: list[TcpServer]) -> None:
    token = "s3cret-token"
    (tmp_path / "token").write_text(token + "\n")
    config = tmp_path / "probewatch.yml"
    config.write_text("api: {token_file: token, state_file: state/registered.json}\n"
                      + _config(listeners, 20))
    auth = {"Authorization": f"Bearer {token}"}
    with serve(config, "--workers=2", "--config.watch-interval=0") as pw:
        wait_for(lambda: _every_probe_ran(pw, "p", 20), 30, what="the file's probes")
        names = [f"extra{i}" for i in range(6)]  # enough that both workers get some
        for name in names:
            body = json.dumps({"kind": "tcp", "target": listeners[0].target, "labels": {"group": "api"}})
            created = requests.put(f"{pw.url}/api/v1/probes/{name}", data=body, headers=auth, timeout=10)
            assert created.status_code == 201, created.text
        wait_for(lambda: all(pw.value("probewatch_probe_up", probe=n, group="api") == 1 for n in names),
                 30, what="the registered probes to run in the workers")
        status = requests.get(f"{pw.url}/status", timeout=10).json()
        assert sorted(p["name"] for p in status["probes"]) == sorted([*names, *(f"p{i:03d}" for i in range(20))])
        assert requests.delete(f"{pw.url}/api/v1/probes/extra0", headers=auth, timeout=10).status_code == 204
        wait_for(lambda: pw.value("probewatch_probe_up", probe="extra0") is None, 10, what="extra0 gone")
        assert requests.get(f"{pw.url}/api/v1/probes/extra1", timeout=10).json()["up"] is True


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_a_shards_probes_spread_over_every_worker(shards: int) -> None:
    """--shard=0/N with --workers=2: both workers get about half of the shard's probes
    (the shard's hash residue must not pick the worker)."""
    from exporter.sharding import Shard
    from exporter.workers.pool import share_of

    shard = Shard(0, shards)
    owned = [f"probe-{i}" for i in range(3000) if shard.owns(f"probe-{i}")]
    per_worker = Counter(share_of(name, shard, 2) for name in owned)
    assert set(per_worker) == {0, 1}
    assert min(per_worker.values()) > 0.4 * len(owned)
