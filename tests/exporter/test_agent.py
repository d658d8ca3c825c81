"""probewatch agent: signed requests answered, everything else refused and logged."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import types
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exporter import __version__
from exporter.agent import add_arguments
from exporter.agent import run as agent_run
from exporter.agent.operations import discover, operation_from_module
from exporter.agent.server import AgentServer
from probes import signing
from tests.support import ROOT, free_port, probewatch_argv, process, wait_for

KEY = b"0123456789abcdef0123456789abcdef"
BUILTINS = {"disk_free", "load_average", "mem_available", "process_count", "uptime"}
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 15)

    return asyncio.run(bounded())


class Client(asyncio.DatagramProtocol):
    """Sends datagrams to the agent and collects what comes back."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)

    async def ask(self, datagram: bytes, wait: float = 2.0) -> bytes | None:
        assert self.transport is not None
        self.transport.sendto(datagram)
        try:
            return await asyncio.wait_for(self.replies.get(), wait)
        except TimeoutError:
            return None


@asynccontextmanager
async def agent_and_client(**kw: Any) -> AsyncIterator[tuple[AgentServer, Client]]:
    """An agent on 127.0.0.1 (port chosen by the kernel) and a client talking to it."""
    agent = AgentServer(KEY, discover(), **kw)
    host, port = await agent.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    try:
        yield agent, client
    finally:
        transport.close()
        await agent.close()


def request(operations: list[Any], **kw: Any) -> tuple[bytes, str]:
    return signing.sign_request(KEY, json.dumps({"version": "1", "operations": operations}), **kw)


def reply_body(datagram: bytes | None, nonce: str) -> dict[str, Any]:
    assert datagram is not None, "no reply"
    body = signing.open_reply(KEY, nonce, datagram)
    assert isinstance(body, str), body
    return json.loads(body)


def refusal_reason(datagram: bytes | None) -> str | None:
    if datagram is None:
        return None
    obj = json.loads(datagram)
    assert obj["type"] == "refused"
    return obj["reason"]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.reason for r in caplog.records if r.getMessage() == "refused request"]  # type: ignore[attr-defined]


# --- answering ---------------------------------------------------------------


def test_signed_request_gets_status_version_and_operation_results(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with agent_and_client() as (_, client):
            datagram, nonce = request(["load_average", "mem_available", "uptime", "process_count",
                                       {"disk_free": ["/", str(tmp_path)]}])
            return reply_body(await client.ask(datagram), nonce)

    body = run(scenario())
    assert body["status"] is True and body["version"] == __version__
    ops = body["operations"]
    assert set(ops) == BUILTINS
    assert set(ops["load_average"]) == {"load1", "load5", "load15"}
    assert ops["load_average"]["load1"] == pytest.approx(os.getloadavg()[0], abs=2.0)
    meminfo = Path("/proc/meminfo").read_text()
    total = int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1)) * 1024  # type: ignore[union-attr]
    assert 0 < ops["mem_available"]["mem_available_bytes"] <= total
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert ops["uptime"]["uptime_seconds"] == pytest.approx(uptime, abs=5)
    assert ops["process_count"]["process_count"] >= 1
    free = shutil.disk_usage(tmp_path).free
    assert ops["disk_free"][f"disk_free_bytes:{tmp_path}"] == pytest.approx(free, rel=0.05)
    assert "disk_free_bytes:/" in ops["disk_free"]


def test_request_can_not_name_a_command_or_module(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile: list[Any] = [
        [{"command": ["touch", str(marker)]}],
        [f"os.system('touch {marker}')"],
        ["../../probes/udp"],
        ["registry"],
        [{"disk_free": [f"/; touch {marker}"]}],
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with agent_and_client() as (_, client):
            out = []
            for ops in hostile:
                datagram, nonce = request(ops)
                out.append(reply_body(await client.ask(datagram), nonce))
            datagram, nonce = signing.sign_request(KEY, json.dumps({"command": f"touch {marker}"}))
            out.append(reply_body(await client.ask(datagram), nonce))
            return out

    bodies = run(scenario())
    assert not marker.exists()
    assert [b["status"] for b in bodies] == [False] * 5 + [True]
    assert bodies[0]["error"].startswith("unknown operation 'command' (known: disk_free, ")
    assert bodies[3]["error"].startswith("unknown operation 'registry'")
    assert bodies[4]["errors"]["disk_free"].startswith("FileNotFoundError")
    assert bodies[5]["operations"] == {}


def test_a_failing_operation_does_not_sink_the_others(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with agent_and_client() as (_, client):
            datagram, nonce = request(["uptime", {"disk_free": ["relative/path"]}])
            return reply_body(await client.ask(datagram), nonce)

    body = run(scenario())
    assert body["status"] is False
    assert body["errors"] == {"disk_free": "ValueError: path 'relative/path' is not absolute"}
    assert "uptime_seconds" in body["operations"]["uptime"]


# --- refusing -------------------------------------------------------------------


def test_bad_signature_stale_and_replay_are_refused_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[str | None]:
        async with agent_and_client(max_skew=30.0, log_interval=0) as (_, client):
            forged, _ = signing.sign_request(b"another key, not the agent's one", "{}")
            old, _ = request(["uptime"], now=time.time() - 120)
            future, _ = request(["uptime"], now=time.time() + 120)
            fresh, nonce = request(["uptime"])
            answered = reply_body(await client.ask(fresh), nonce)
            assert answered["status"] is True
            return [refusal_reason(await client.ask(d)) for d in (forged, old, future, fresh)]

    with caplog.at_level(logging.WARNING, logger="probewatch.agent"):
        reasons = run(scenario())
    assert reasons == ["bad_signature", "stale", "stale", "replay"]
    assert refusals(caplog) == reasons
    stale = [r for r in caplog.records if getattr(r, "reason", "") == "stale"]
    details = [r.detail for r in stale]  # type: ignore[attr-defined]
    assert details == ["timestamp is 120.0s old (allowed skew: 30s)",
                       "timestamp is 120.0s ahead of this agent's clock (allowed skew: 30s)"]


def test_malformed_datagrams_never_stop_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    nonce = "ab" * 16
    junk = [
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"mdp": 1}',
        b'{"mdp": 1, "type": "request", "nonce": "zz", "ts": 1, "body": "", "mac": ""}',
        json.dumps({"mdp": 1, "type": "request", "nonce": nonce, "ts": "soon", "body": "{}",
                    "mac": "00"}).encode(),
        json.dumps({"mdp": 1, "type": "request", "nonce": nonce, "ts": 1.5e300,
                    "body": "{}", "mac": "00" * 32}).encode(),
        json.dumps({"mdp": 1, "type": "request", "nonce": nonce, "ts": 10**400,
                    "body": "{}", "mac": "00" * 32}).encode(),
        b"{" * 50000,
        b"x" * 60000,
    ]

    async def scenario() -> tuple[list[bytes | None], dict[str, Any]]:
        async with agent_and_client(log_interval=0) as (_, client):
            answers = [await client.ask(d, wait=0.2) for d in junk]
            datagram, good_nonce = request(["uptime"])
            return answers, reply_body(await client.ask(datagram), good_nonce)

    with caplog.at_level(logging.WARNING, logger="probewatch.agent"):
        answers, body = run(scenario())
    assert body["status"] is True
    # Only envelopes get a refusal back, and never one larger than what was sent.
    for datagram, answer in zip(junk, answers, strict=True):
        assert answer is None or len(answer) <= len(datagram)
    assert answers[:3] == [None] * 3 and answers[7:] == [None, None]
    assert [refusal_reason(a) for a in answers[3:7]] == ["malformed"] * 4
    assert refusals(caplog) == ["not_mdp"] * 2 + ["malformed"] * 5 + ["not_mdp"] * 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_replay_cache_is_bounded_and_refuses_when_full() -> None:
    async def scenario() -> list[str | None]:
        async with agent_and_client(replay_capacity=3) as (agent, client):
            out = []
            for _ in range(5):
                datagram, _nonce = request(["uptime"])
                answer = await client.ask(datagram)
                out.append(refusal_reason(answer) if b'"refused"' in (answer or b"") else "ok")
            assert len(agent.replay) == 3
            return out

    assert run(scenario()) == ["ok", "ok", "ok", "busy", "busy"]


# --- plugins ---------------------------------------------------------------------


def test_operations_are_discovered_with_their_docstrings(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert agent_run(parser.parse_args(["--list-operations"])) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert heads == ["disk_free PATH...", "load_average", "mem_available", "process_count",
                     "uptime"]
    assert "    System load average over 1, 5 and 15 minutes" in out


def test_a_module_without_docstring_or_collect_is_no_operation() -> None:
    bare = types.ModuleType("bare")
    bare.collect = lambda args: {}  # type: ignore[attr-defined]
    documented = types.ModuleType("documented", "Says hello (field hello).")
    assert operation_from_module("bare", bare) is None
    assert operation_from_module("documented", documented) is None
    documented.collect = lambda args: {"hello": 1.0}  # type: ignore[attr-defined]
    op = operation_from_module("documented", documented)
    assert op is not None and op.summary == "Says hello (field hello)."


# --- the real command ------------------------------------------------------------


def _key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "agent.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(mode)
    return path


@contextmanager
def agent_process(tmp_path: Path, *flags: str,
                  log_name: Path | None = None) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    log = tmp_path / "agent.log"
    with log.open("w") as out, process(probewatch_argv("agent", *flags), stdout=out,
                                        stderr=subprocess.STDOUT, cwd=ROOT) as proc:
        def listening() -> str | None:
            text = log_name.read_text() if log_name and log_name.exists() else log.read_text()
            found = re.search(r'msg="agent listening" address=(\S+)|"msg":"agent listening","address":"([^"]+)"',
                              text)
            assert proc.poll() is None, log.read_text()
            return (found.group(1) or found.group(2)) if found else None

        address = wait_for(listening, timeout=20, what="the agent to listen")
        yield proc, address, log


def test_agent_command_serves_the_probe_command_and_stops_on_term(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    flags = ("--listen=127.0.0.1:0", f"--key-file={key}")
    with agent_process(tmp_path, *flags) as (proc, address, log):
        config = tmp_path / "probewatch.yml"
        config.write_text(
            "probes:\n"
            "  - name: mdp\n"
            "    kind: udp\n"
            f"    target: {address}\n"
            "    timeout: 2s\n"
            "    udp:\n"
            f"      key_file: {key}\n"
            "      operations: [load_average, uptime, {disk_free: [/]}]\n")
        done = subprocess.run(probewatch_argv("probe", "mdp", f"--config.file={config}"),
                              capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "result:  up" in done.stdout and "code:    0" in done.stdout
        for field in ("load1", "load5", "load15", "uptime_seconds", "disk_free_bytes:/"):
            assert re.search(rf'probewatch_probe_value\{{[^}}]*field="{re.escape(field)}"',
                             done.stdout), field

        host, _, port = address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            forged, _ = signing.sign_request(b"another key, not the agent's one", "{}")
            s.settimeout(2)
            s.sendto(forged, (host, int(port)))
            assert refusal_reason(s.recv(65535)) == "bad_signature"
        line = wait_for(lambda: [x for x in log.read_text().splitlines() if "refused" in x],
                        what="the refusal log line")[0]
        assert re.match(r'ts=\S+ level=warning logger=probewatch.agent msg="refused request" '
                        r'reason=bad_signature peer=127.0.0.1:\d+ detail="[^"]+" bytes=\d+$', line)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    assert 'msg="agent stopped"' in log.read_text()


def test_agent_command_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    try:
        free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        pytest.skip("this host has no IPv6 loopback (::1)")
    key = _key_file(tmp_path, mode=0o644)
    with agent_process(tmp_path, "--listen=[::1]:0", f"--key-file={key}") as (_, address, log):
        assert address.startswith("[::1]:")
        port = int(address.rpartition(":")[2])
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            datagram, nonce = request(["uptime"])
            s.settimeout(2)
            s.sendto(datagram, ("::1", port))
            assert reply_body(s.recv(65535), nonce)["status"] is True
        assert 'msg="key file is readable by group or others; chmod 600 it"' in log.read_text()


@pytest.mark.parametrize(("flags", "code", "message"), [
    ([], 2, "probewatch agent: --key.file is required"),
    (["--key-file=/nonexistent/agent.key"], 2,
     "probewatch agent: cannot read key file '/nonexistent/agent.key': No such file or directory"),
    (["--key-file={short}"], 2, "holds 5 bytes; a key needs at least 16"),
    (["--key-file={key}", "--listen=127.0.0.1"], 2, "is not HOST:PORT"),
    (["--key-file={key}", "--listen=127.0.0.1:{busy}"], 1, "cannot listen on 127.0.0.1:"),
    (["--key-file={key}", "--max-skew=soon"], 2, "'soon' is not a duration"),
])
def test_agent_command_rejects_bad_flags(
        tmp_path: Path, flags: list[str], code: int, message: str) -> None:
    key = _key_file(tmp_path)
    short = tmp_path / "short.key"
    short.write_text("12345")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        argv = [f.format(key=key, short=short, busy=busy.getsockname()[1]) for f in flags]
        done = subprocess.run(probewatch_argv("agent", *argv), capture_output=True, text=True,
                              timeout=30, cwd=ROOT)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_list_operations_command() -> None:
    done = subprocess.run(probewatch_argv("agent", "--list-operations"), capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name in BUILTINS:
        assert re.search(rf"^{name}\b", done.stdout, re.MULTILINE), name
    assert "Fields disk_free_bytes:PATH, one per path" in done.stdout


# --- rate-limited refusal logs ----------------------------------------------------


def test_repeated_refusals_become_one_summary_line_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with agent_and_client(log_interval=1.0) as (_, client):
            for _ in range(40):
                forged, _nonce = signing.sign_request(b"another key, not the agent's one", "{}")
                assert refusal_reason(await client.ask(forged)) == "bad_signature"
            for _ in range(5):
                old, _nonce = request(["uptime"], now=time.time() - 120)
                assert refusal_reason(await client.ask(old)) == "stale"
            # The timer writes the summaries once the interval is over, with no further datagram.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(summaries(caplog)) < 2:
                await asyncio.sleep(0.05)
            forged, _nonce = signing.sign_request(b"another key, not the agent's one", "{}")
            assert refusal_reason(await client.ask(forged)) == "bad_signature"

    with caplog.at_level(logging.WARNING, logger="probewatch.agent"):
        run(scenario())
    assert refusals(caplog) == ["bad_signature", "stale", "bad_signature"]
    lines = summaries(caplog)
    assert len(lines) == 2, lines
    assert re.fullmatch(r"refused 39 more datagrams \(bad signature\) in the last (1s|\d+ms)", lines[0])
    assert re.fullmatch(r"refused 4 more datagrams \(stale\) in the last (1s|\d+ms)", lines[1])
    counted = [(r.reason, r.count) for r in caplog.records if "more datagram" in r.getMessage()]  # type: ignore[attr-defined]
    assert counted == [("bad_signature", 39), ("stale", 4)]


def _answers(datagram: bytes, nonce: str) -> bool:
    try:
        body = signing.open_reply(KEY, nonce, datagram)
    except signing.BadEnvelope:
        return False
    return isinstance(body, str) and json.loads(body)["status"] is True


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused ") and
            "more datagram" in r.getMessage()]


def test_a_flood_of_garbage_writes_a_few_lines_with_serve_style_flags(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    log_file = tmp_path / "agent.json.log"
    flags = ("--web.listen-address=127.0.0.1:0", f"--key.file={key}", f"--log.file={log_file}",
             "--log.format=json")
    with agent_process(tmp_path, *flags, log_name=log_file) as (proc, address, _):
        host, _, port = address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(True)
            for i in range(10_000):
                s.sendto(b"\x1b[2J garbage \x07" + str(i).encode(), (host, int(port)))
                if i % 100 == 99:
                    time.sleep(0.01)  # paced, so the loopback buffer drops fewer
            s.settimeout(2)
            nonces: list[str] = []
            for _attempt in range(10):  # the flood may still fill the socket's buffer: ask again
                datagram, nonce = request(["uptime"])
                nonces.append(nonce)
                s.sendto(datagram, (host, int(port)))
                try:
                    answer = s.recv(65535)
                except TimeoutError:
                    continue
                # A late answer to an earlier attempt counts as well.
                assert any(_answers(answer, n) for n in nonces), answer
                break
            else:
                raise AssertionError("the agent stopped answering after the flood")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    text = log_file.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert len(text) < 4000 and len(events) <= 6, text[:4000]
    assert [e["msg"] for e in events if e["msg"] == "refused request"] == ["refused request"]
    summary = [e for e in events if "more datagrams (not mdp)" in e["msg"]]
    assert len(summary) == 1 and summary[0]["reason"] == "not_mdp", events
    # Loopback drops what a busy agent cannot read in time; what it read is counted, not logged.
    assert 1_000 <= summary[0]["count"] <= 9_999, summary
    assert events[-1]["msg"] == "agent stopped"
    assert "\x1b" not in text and "\x07" not in text
