"""Registration under --shard: a 2xx means the probe runs on the exporter that said it.

Two real exporters, --shard=0/2 and --shard=1/2, started from one config file.
A probe whose name hashes to the other shard is refused with 421 naming the
owner; every probe accepted is listed, run and exported where it was accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from exporter.sharding import Shard
from tests.exporter.exporter_process import Running, serve
from tests.probes.servers import TcpServer
from tests.support import wait_for

TOKEN = "shard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def owner(name: str) -> int:
    return next(i for i in range(2) if Shard(i, 2).owns(name))


def api_names(pw: Running) -> set[str]:
    listed = requests.get(f"{pw.url}/api/v1/probes", timeout=10).json()["probes"]
    return {p["name"] for p in listed if p["source"] == "api"}


def test_each_registration_runs_where_it_was_accepted_or_names_the_owner(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "probewatch.yml"
    config.write_text("api: {token_file: token}\ndefaults: {period: 1s, timeout: 500ms}\nprobes: []\n")
    names = [f"svc-{i}" for i in range(6)]
    assert {owner(n) for n in names} == {0, 1}, "the six names must cover both shards"
    server = TcpServer(lambda conn: b"")
    try:
        with serve(config, "--shard=0/2") as zero, serve(config, "--shard=1/2") as one:
            shards = [zero, one]
            for name in names:
                body = json.dumps({"kind": "tcp", "target": server.target})
                first = requests.put(f"{zero.url}/api/v1/probes/{name}", data=body, headers=AUTH,
                                     timeout=10)
                if owner(name) == 0:
                    assert first.status_code == 201, first.text
                    continue
                assert first.status_code == 421, first.text
                assert first.json()["shard"] == "1/2"
                assert "--shard=1/2" in first.json()["error"]
                second = requests.put(f"{one.url}/api/v1/probes/{name}", data=body, headers=AUTH,
                                      timeout=10)
                assert second.status_code == 201, second.text
            # Megaphone's /check/add follows the same rule (loopback: no token needed).
            check = next(n for n in (f"chk-{i}" for i in range(50)) if owner(n) == 1)
            refused = requests.put(f"{zero.url}/check/add", timeout=10,
                                   data=json.dumps({"id": check, "url": "http://127.0.0.1:1/s"}))
            assert refused.status_code == 421 and "1/2" in refused.text

            for index, pw in enumerate(shards):
                mine = {n for n in names if owner(n) == index}
                assert api_names(pw) == mine
                for name in mine:
                    wait_for(lambda pw=pw, name=name: pw.value("probewatch_probe_up", probe=name) == 1,
                             10, what=f"{name} to run on shard {index}")
                for name in set(names) - mine:
                    assert pw.value("probewatch_probe_up", probe=name) is None
        # Each shard kept its own state file (the default name carries the shard).
        for index in range(2):
            kept = json.loads((tmp_path / f"registered-probes.shard-{index}-of-2.json").read_text())
            assert set(kept["probes"]) == {n for n in names if owner(n) == index}
    finally:
        server.close()
