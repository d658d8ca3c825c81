"""Runtime registration: PUT/DELETE /api/v1/probes/NAME and the state file behind it
(exporter/status/store.py and the write side of exporter/status/api.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import ApiSettings, Defaults
from exporter.status.store import (
    TEMP_PREFIX,
    RegisteredProbes,
    Settings,
    StoreError,
    read_state_file,
)
from tests.exporter.exporter_process import Running, serve
from tests.probes.servers import TcpServer
from tests.support import ROOT, probewatch_argv, stop, wait_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = """
api: {{token_file: token, state_file: state/registered.json{more}}}
defaults: {{period: 1s, timeout: 500ms, labels: {{team: ops}}}}
probes:
  - {{name: from-file, kind: tcp, target: "{up}"}}
"""


@pytest.fixture
def up() -> Iterator[str]:
    server = TcpServer(lambda conn: b"")
    try:
        yield server.target
    finally:
        server.close()


def setup(tmp_path: Path, up: str, more: str = "") -> Path:
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = tmp_path / "probewatch.yml"
    config.write_text(CONFIG.format(up=up, more=more))
    return config


def put(pw: Running, name: str, body: Any, headers: dict[str, str] | None = None
        ) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.put(f"{pw.url}/api/v1/probes/{name}", data=data,
                        headers=AUTH if headers is None else headers, timeout=10)


def delete(pw: Running, name: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.delete(f"{pw.url}/api/v1/probes/{name}",
                           headers=AUTH if headers is None else headers, timeout=10)


def get(pw: Running, name: str) -> requests.Response:
    return requests.get(f"{pw.url}/api/v1/probes/{name}", timeout=10)


def registered(pw: Running) -> dict[str, dict[str, str]]:
    listed = requests.get(f"{pw.url}/api/v1/probes", timeout=10).json()["probes"]
    return {p["name"]: p["labels"] for p in listed if p["source"] == "api"}


def test_registration_round_trip_survives_restarts(tmp_path: Path, up: str) -> None:
    config = setup(tmp_path, up)
    state_file = tmp_path / "state" / "registered.json"
    with serve(config) as pw:
        created = put(pw, "extra", {"kind": "tcp", "target": up, "labels": {"group": "api"}})
        assert created.status_code == 201, created.text
        assert created.json()["source"] == "api"
        assert created.json()["definition"]["labels"] == {"group": "api", "team": "ops"}
        wait_for(lambda: get(pw, "extra").json()["up"] is True, 10, what="extra to run")
        assert pw.value("probewatch_probe_up", probe="extra", group="api") == 1
        status = requests.get(f"{pw.url}/status", timeout=10).json()
        assert [p["name"] for p in status["probes"]] == ["extra", "from-file"]

        replaced = put(pw, "extra", {"name": "extra", "kind": "tcp", "target": up,
                                     "labels": {"group": "api2"}})
        assert replaced.status_code == 200, replaced.text
        assert get(pw, "extra").json()["labels"] == {"group": "api2", "team": "ops"}
    assert json.loads(state_file.read_text())["probes"] == {
        "extra": {"name": "extra", "kind": "tcp", "target": up, "labels": {"group": "api2"}}}

    with serve(config) as pw:
        again = get(pw, "extra").json()
        assert (again["source"], again["labels"]) == ("api", {"group": "api2", "team": "ops"})
        wait_for(lambda: get(pw, "extra").json()["up"] is True, 10, what="extra to run again")
        gone = delete(pw, "extra")
        assert gone.status_code == 204
        assert get(pw, "extra").status_code == 404
        assert delete(pw, "extra").status_code == 404
        assert pw.value("probewatch_probe_up", probe="extra") is None
        assert get(pw, "from-file").status_code == 200

    with serve(config) as pw:
        assert get(pw, "extra").status_code == 404
        assert registered(pw) == {}


def test_registered_probes_survive_a_reload_and_take_the_new_defaults(
        tmp_path: Path, up: str) -> None:
    config = setup(tmp_path, up)
    with serve(config, "--config.watch-interval=0", "--web.enable-lifecycle") as pw:
        assert put(pw, "extra", {"kind": "tcp", "target": up}).status_code == 201
        wait_for(lambda: get(pw, "extra").json()["up"] is True, 10, what="extra to run")
        config.write_text(config.read_text().replace("team: ops", "team: web"))
        assert pw.post("/-/reload")[0] == 200
        extra = get(pw, "extra").json()
        assert (extra["source"], extra["labels"]) == ("api", {"team": "web"})
        assert get(pw, "from-file").json()["labels"] == {"team": "web"}


def test_writes_need_the_bearer_token(tmp_path: Path, up: str) -> None:
    config = setup(tmp_path, up)
    definition = {"kind": "tcp", "target": up}
    with serve(config) as pw:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            refused = put(pw, "extra", definition, headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert delete(pw, "from-file", headers).status_code == 401
        assert get(pw, "extra").status_code == 404
        assert not (tmp_path / "state" / "registered.json").exists()
        assert requests.get(f"{pw.url}/api/v1/probes", timeout=10).status_code == 200

        # The token file is read on each write, so it can be rotated without a restart.
        (tmp_path / "token").write_text("rotated\n")
        assert put(pw, "extra", definition).status_code == 401
        assert put(pw, "extra", definition, {"Authorization": "Bearer rotated"}).status_code == 201


def test_writes_are_off_without_a_token_file(tmp_path: Path, up: str) -> None:
    config = tmp_path / "probewatch.yml"
    config.write_text(f"probes:\n  - {{name: from-file, kind: tcp, target: '{up}'}}\n")
    with serve(config) as pw:
        refused = put(pw, "extra", {"kind": "tcp", "target": up})
        assert refused.status_code == 403
        assert "api.token_file" in refused.json()["error"]
        assert delete(pw, "extra").status_code == 403
        assert get(pw, "extra").status_code == 404


def test_bad_definition_is_400_with_every_problem_worded_as_for_the_file(
        tmp_path: Path, up: str) -> None:
    bad = {"name": "bad", "kind": "tcp", "target": up, "period": "1s", "timeout": "2s",
           "failures": 0,
           "labels": {"probe": "x"}, "tcp": {"bogus": 1, "tls": "yes"}, "colour": "red"}
    # The same definition in a config file (JSON is YAML), checked by `probewatch check`.
    as_file = tmp_path / "as-file.yml"
    as_file.write_text("probes:\n  - " + json.dumps(bad) + "\n")
    checked = subprocess.run(probewatch_argv("check", f"--config.file={as_file}"), cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2
    prefix = f"{as_file}:2: probes[0] (bad): "
    from_file = [line.removeprefix(prefix) for line in checked.stderr.splitlines()
                 if line.startswith(prefix)]
    assert len(from_file) == 6, checked.stderr

    with serve(setup(tmp_path, up)) as pw:
        answer = put(pw, "bad", bad)
        assert answer.status_code == 400
        assert answer.json()["problems"] == from_file
        assert answer.json()["error"] == "probe 'bad' not registered: 6 problem(s)"

        not_json = put(pw, "bad", b"{kind: tcp")
        assert not_json.status_code == 400
        assert not_json.json()["error"].startswith("body is not valid JSON")
        listed = put(pw, "bad", [1, 2])
        assert listed.json()["problems"] == ["the probe definition must be a JSON object"]
        renamed = put(pw, "bad", {"name": "other", "kind": "tcp", "target": up})
        assert renamed.json()["problems"] == [
            "name: 'other' differs from the name in the URL ('bad')"]
        assert put(pw, "b%20d", {"kind": "tcp", "target": up}).status_code == 400
        assert registered(pw) == {}


def test_config_file_probes_cannot_be_replaced_or_deleted(tmp_path: Path, up: str) -> None:
    with serve(setup(tmp_path, up)) as pw:
        replaced = put(pw, "from-file", {"kind": "tcp", "target": up})
        assert replaced.status_code == 409
        assert "config file" in replaced.json()["error"]
        assert delete(pw, "from-file").status_code == 409
        assert get(pw, "from-file").json()["source"] == "config"


def test_command_probes_need_allow_command(tmp_path: Path, up: str) -> None:
    definition = {"kind": "command", "command": {"argv": ["true"]}}
    with serve(setup(tmp_path, up)) as pw:
        refused = put(pw, "cmd", definition)
        assert refused.status_code == 403
        assert "api.allow_command" in refused.json()["error"]
        assert get(pw, "cmd").status_code == 404

    with serve(setup(tmp_path, up, more=", allow_command: true")) as pw:
        assert put(pw, "cmd", definition).status_code == 201
        wait_for(lambda: get(pw, "cmd").json()["up"] is True, 10, what="cmd to run")


def test_concurrent_puts_and_deletes_lose_nothing(tmp_path: Path, up: str) -> None:
    threads, per_thread = 6, 8
    config = setup(tmp_path, up)

    def worker(t: int) -> list[int]:
        codes = []
        for j in range(per_thread):
            codes.append(put(pw, f"t{t}-{j}", {"kind": "tcp", "target": up, "period": "1h",
                                               "timeout": "1s", "labels": {"round": "1"}}).status_code)
        for j in range(per_thread):
            if j % 2:
                codes.append(delete(pw, f"t{t}-{j}").status_code)
            else:
                codes.append(put(pw, f"t{t}-{j}", {"kind": "tcp", "target": up, "period": "1h",
                                                   "timeout": "1s", "labels": {"round": "2"}}
                                 ).status_code)
        return codes

    expected = {f"t{t}-{j}": {"round": "2", "team": "ops"}
                for t in range(threads) for j in range(0, per_thread, 2)}
    with serve(config, f"--log.file={tmp_path / 'probewatch.log'}") as pw:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(worker, range(threads)))
        for codes in results:
            assert codes == [201] * per_thread + [200, 204] * (per_thread // 2)
        assert registered(pw) == expected
    on_disk = read_state_file(str(tmp_path / "state" / "registered.json"))
    assert sorted(on_disk) == sorted(expected)
    assert all(d["labels"] == {"round": "2"} for d in on_disk.values())
    with serve(config) as pw:
        assert registered(pw) == expected


def test_a_broken_state_file_is_kept_and_registration_refused(tmp_path: Path, up: str) -> None:
    config = setup(tmp_path, up)
    state_file = tmp_path / "state" / "registered.json"
    state_file.parent.mkdir()
    state_file.write_text('{"version": 1, "probes": {"half-writ')
    with serve(config) as pw:
        assert get(pw, "from-file").status_code == 200
        refused = put(pw, "extra", {"kind": "tcp", "target": up})
        assert refused.status_code == 503
        assert "is not valid JSON" in refused.json()["error"]
    assert state_file.read_text() == '{"version": 1, "probes": {"half-writ'


def test_a_state_file_that_cannot_be_written_changes_nothing(tmp_path: Path, up: str) -> None:
    with serve(setup(tmp_path, up)) as pw:
        # The state file's directory cannot be made once a regular file holds its name.
        (tmp_path / "state").write_text("in the way\n")
        failed = put(pw, "extra", {"kind": "tcp", "target": up})
        assert failed.status_code == 500
        assert "cannot be written" in failed.json()["error"]
        assert get(pw, "extra").status_code == 404


# -- the state file survives a writer killed at any moment ----------------------

WRITER = textwrap.dedent("""
    import sys
    from exporter.status.store import write_atomic
    template, path = open(sys.argv[1], "rb").read(), sys.argv[2]
    generation = int(sys.argv[3])
    while True:
        generation += 1
        write_atomic(path, template.replace(b"@GEN@", str(generation).encode()))
""")


def _template(probes: int = 500) -> bytes:
    from exporter.status.store import encode

    return encode({f"p{i:04d}": {"kind": "tcp", "target": "127.0.0.1:9",
                                 "labels": {"generation": "@GEN@", "pad": "x" * 1500}}
                   for i in range(probes)})


def test_a_writer_killed_at_random_moments_leaves_the_old_or_the_new_file(
        tmp_path: Path) -> None:
    template = _template()
    (tmp_path / "template").write_bytes(template)
    path = tmp_path / "registered.json"
    rng = random.Random(6)
    generation, mid_write, kills = 0, 0, 20
    deadline = time.monotonic() + 60
    for _ in range(kills):
        assert time.monotonic() < deadline, "the kill loop took too long"
        before = path.stat().st_mtime_ns if path.exists() else 0
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "template"), str(path), str(generation)],
            cwd=ROOT, start_new_session=True)
        try:
            # Kill only after this writer replaced the file at least once.
            wait_for(lambda before=before: path.exists() and path.stat().st_mtime_ns != before, 20,
                     interval=0.002, what="the writer's first write")
            time.sleep(rng.uniform(0, 0.05))
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(10)
        finally:
            stop(writer)
        if any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir()):
            mid_write += 1
        blob = path.read_bytes()
        probes = read_state_file(str(path))  # raises StoreError if broken
        seen = int(probes["p0000"]["labels"]["generation"])
        assert blob == template.replace(b"@GEN@", str(seen).encode()), "a mix of versions"
        assert seen > generation, "the file went back to an older version"
        generation = seen
    print(f"{kills} kills, {mid_write} during a write, {generation} writes in all")

    store = RegisteredProbes(str(path), lambda: Settings(Defaults(), ApiSettings()))
    store.load()
    assert not store.broken
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)], \
        "loading removes the temporary files dead writers left"
    assert len(store.specs()) == 500


def test_read_state_file_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "registered.json"
    assert read_state_file(str(path)) == {}
    for text, says in (("[]", 'must be an object with a "probes" object'),
                       ('{"version": 7, "probes": {}}', "version 7 is not 1"),
                       ("{", "is not valid JSON")):
        path.write_text(text)
        with pytest.raises(StoreError) as caught:
            read_state_file(str(path))
        assert str(caught.value).startswith(f"{path}: ")
        assert says in str(caught.value)


def test_store_serializes_concurrent_writers(tmp_path: Path) -> None:
    """Without HTTP: many threads putting and deleting through one store."""
    from exporter.status.store import resolve

    store = RegisteredProbes(str(tmp_path / "r.json"), lambda: Settings(Defaults(), ApiSettings()))
    store.load()
    barrier = threading.Barrier(4)

    def worker(t: int) -> None:
        barrier.wait()
        for j in range(12):
            raw = {"kind": "tcp", "target": "127.0.0.1:9"}
            spec, problems = resolve(f"s{t}-{j}", raw, Defaults(), ApiSettings())
            assert spec is not None, problems
            store.put(spec, raw)
            if j % 4 == 0:
                assert store.delete(f"s{t}-{j}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    expected = sorted(f"s{t}-{j}" for t in range(4) for j in range(12) if j % 4)
    assert store.names() == expected
    assert sorted(read_state_file(str(tmp_path / "r.json"))) == expected
    assert sorted(s.name for s in store.specs()) == expected
