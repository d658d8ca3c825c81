"""The udp kind against real UDP peers on loopback: plain echo, the agent, forgers."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exporter.agent.operations import discover
from exporter.agent.server import AgentServer
from exporter.config import ConfigError, ProbeSpec, load_config, parse_config
from probes import signing
from probes.base import Result
from probes.udp import UdpProbe
from tests.exporter.test_config import expected_messages
from tests.probes.run import once
from tests.support import ROOT, free_port, probewatch_argv

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"
FIXTURES = ROOT / "tests" / "fixtures"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 15)

    return asyncio.run(bounded())


def key_file(tmp_path: Path, key: str = KEY, name: str = "udp.key") -> str:
    path = tmp_path / name
    path.write_text(key + "\n")
    path.chmod(0o600)
    return str(path)


def udp_spec(target: str, block: dict[str, Any], timeout: str = "1s") -> ProbeSpec:
    """A probe spec made by the real config parser (options checked and compiled)."""
    text = json.dumps({"probes": [{"name": "mdp", "kind": "udp", "target": target,
                                   "period": "5s", "timeout": timeout, "udp": block}]})
    return parse_config(text, "test.yml").probes[0]


class Peer(asyncio.DatagramProtocol):
    """A UDP peer on 127.0.0.1 that answers each datagram with ``answer(data)``."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def start_peer(answer: Callable[[bytes], bytes | None]) -> tuple[Peer, str]:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(lambda: Peer(answer),
                                                  local_addr=("127.0.0.1", 0))
    assert peer.transport is not None
    port = peer.transport.get_extra_info("sockname")[1]
    return peer, f"127.0.0.1:{port}"


async def start_agent(tmp_path: Path, **kw: Any) -> tuple[AgentServer, str]:
    agent = AgentServer(KEY.encode(), discover(), **kw)
    host, port = await agent.start("127.0.0.1", 0)
    return agent, f"{host}:{port}"


async def probe_agent(tmp_path: Path, block: dict[str, Any], **agent_kw: Any) -> Result:
    """One udp probe run against a fresh agent that is closed afterwards."""
    agent, target = await start_agent(tmp_path, **agent_kw)
    try:
        return await once(UdpProbe(udp_spec(target, block)))
    finally:
        await agent.close()


def fields(result: Result) -> dict[str, float]:
    return {dict(r.labels)["field"]: r.value for r in result.readings
            if r.metric == "probewatch_probe_value"}


# --- plain UDP peers, no signing ----------------------------------------------


def test_plain_peer_gets_unescaped_send_and_reply_must_hold_expect() -> None:
    async def scenario() -> tuple[Result, Result, list[bytes]]:
        peer, target = await start_peer(lambda d: b"PONG ready\r\n" if d == b"PING\r\n" else b"?")
        up = await once(UdpProbe(udp_spec(target, {"send": "PING\\r\\n", "expect": "PONG"})))
        down = await once(UdpProbe(udp_spec(target, {"send": "PING", "expect": "PONG"})))
        assert peer.transport is not None
        peer.transport.close()
        return up, down, peer.received

    up, down, received = run(scenario())
    assert received[0] == b"PING\r\n"
    assert (up.up, up.code) == (True, 0)
    assert (down.up, down.code, down.reason) == (False, 0, "unexpected_response")
    assert down.message == "reply lacks 'PONG': got '?'"


def test_regex_expect_and_json_send() -> None:
    async def scenario() -> tuple[Result, Result, list[bytes]]:
        peer, target = await start_peer(lambda d: b"version=2.4.1 ok")
        good = await once(UdpProbe(udp_spec(target, {"send": {"op": "version", "n": 1},
                                                "expect": {"regex": r"version=2\.\d+"}})))
        bad = await once(UdpProbe(udp_spec(target, {"send": "v",
                                               "expect": {"regex": r"^version=3"}})))
        assert peer.transport is not None
        peer.transport.close()
        return good, bad, peer.received

    good, bad, received = run(scenario())
    assert json.loads(received[0]) == {"op": "version", "n": 1}
    assert good.up
    assert not bad.up and bad.reason == "unexpected_response"
    assert "regex '^version=3'" in bad.message


def test_json_path_expectations_on_a_plain_json_reply() -> None:
    reply = json.dumps({"status": "ok", "queue": {"depth": 12}}).encode()

    async def scenario() -> tuple[Result, Result, Result]:
        peer, target = await start_peer(lambda d: reply if d != b"text" else b"not json")
        ok = await once(UdpProbe(udp_spec(target, {"send": "q", "expect": [
            {"path": "$.status", "equals": "ok"}, {"path": "$.queue.depth", "max": 100}]})))
        over = await once(UdpProbe(udp_spec(target, {"send": "q", "expect": [
            {"path": "$.queue.depth", "max": 10}]})))
        text = await once(UdpProbe(udp_spec(target, {"send": "text", "expect": [
            {"path": "$.status"}]})))
        assert peer.transport is not None
        peer.transport.close()
        return ok, over, text

    ok, over, text = run(scenario())
    assert ok.up
    assert (over.up, over.reason) == (False, "unexpected_response")
    assert over.message == "$.queue.depth is 12, expected at most 10"
    assert text.reason == "unexpected_response" and text.message.startswith("reply is not JSON")


def test_no_reply_is_a_timeout_with_code_minus_one() -> None:
    async def scenario() -> tuple[Result, float]:
        peer, target = await start_peer(lambda d: None)
        t0 = time.monotonic()
        result = await once(UdpProbe(udp_spec(target, {"send": "ping"}, timeout="300ms")))
        assert peer.transport is not None and peer.received == [b"ping"]
        peer.transport.close()
        return result, time.monotonic() - t0

    result, elapsed = run(scenario())
    assert (result.up, result.reason, result.code) == (False, "timeout", -1)
    assert result.message.startswith("no reply from ") and "within 300ms" in result.message
    assert 0.25 < elapsed < 2.0


def test_closed_port_is_refused_at_once() -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    t0 = time.monotonic()
    result = run(once(UdpProbe(udp_spec(f"127.0.0.1:{port}", {"send": "ping"}, timeout="2s"))))
    assert (result.up, result.reason, result.code) == (False, "refused", -1)
    assert time.monotonic() - t0 < 1.5


# --- signed: against the agent ----------------------------------------------------


def test_agent_operations_become_probe_values(tmp_path: Path) -> None:
    block = {"key_file": key_file(tmp_path), "operations": [
        "load_average", "mem_available", {"disk_free": [str(tmp_path)]}, "uptime",
        "process_count"]}

    result = run(probe_agent(tmp_path, block))
    assert (result.up, result.code) == (True, 0), result.message
    values = fields(result)
    assert set(values) == {"load1", "load5", "load15", "mem_available_bytes",
                           f"disk_free_bytes:{tmp_path}", "uptime_seconds", "process_count"}
    free = shutil.disk_usage(tmp_path).free
    assert abs(values[f"disk_free_bytes:{tmp_path}"] - free) < max(free * 0.05, 64 << 20)
    assert values["mem_available_bytes"] > 0 and values["process_count"] >= 1
    assert values["uptime_seconds"] > 0 and values["load1"] >= 0


def test_json_path_expectations_read_the_signed_reply_body(tmp_path: Path) -> None:
    block = {"key_file": key_file(tmp_path), "operations": ["process_count"],
             "expect": [{"path": "$.operations.process_count.process_count", "max": 0}]}

    result = run(probe_agent(tmp_path, block))
    assert (result.up, result.reason) == (False, "unexpected_response")
    assert result.message.startswith("$.operations.process_count.process_count is ")
    assert result.message.endswith("expected at most 0")
    assert "process_count" in fields(result)


def test_wrong_key_fails_with_auth_and_agent_logs_refusal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    block = {"key_file": key_file(tmp_path, OTHER_KEY), "operations": ["uptime"]}

    async def scenario() -> Result:
        agent, target = await start_agent(tmp_path)
        try:
            return await once(UdpProbe(udp_spec(target, block)))
        finally:
            await agent.close()

    with caplog.at_level(logging.WARNING, logger="probewatch.agent"):
        result = run(scenario())
    assert (result.up, result.reason, result.code) == (False, "auth", 0)
    assert result.message == (
        "agent refused the request: bad signature: is key_file the agent's key?")
    assert [getattr(r, "reason", None) for r in caplog.records] == ["bad_signature"]


def test_stale_timestamp_is_refused(tmp_path: Path) -> None:
    block = {"key_file": key_file(tmp_path), "operations": ["uptime"]}

    # The agent's clock runs two minutes ahead of the prober's.
    result = run(probe_agent(tmp_path, block, clock=lambda: time.time() + 120))
    assert (result.up, result.reason) == (False, "auth")
    assert "stale timestamp" in result.message


class Relay(asyncio.DatagramProtocol):
    """A man in the middle between probe and agent that can replay old datagrams."""

    def __init__(self, agent: tuple[str, int], mode: str) -> None:
        self.agent, self.mode = agent, mode
        self.requests: list[bytes] = []
        self.replies: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.client: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        if addr == self.agent:
            self.replies.append(data)
            reply = self.replies[0] if self.mode == "old-reply" else data
            self.transport.sendto(reply, self.client)
            return
        self.client = addr
        self.requests.append(data)
        request = self.requests[0] if self.mode == "old-request" else data
        self.transport.sendto(request, self.agent)


@pytest.mark.parametrize(("mode", "message"), [
    ("old-request", "refusal answers another request (nonce differs)"),
    ("old-reply", "reply answers another request (nonce differs)"),
])
def test_replayed_request_or_reply_fails_with_auth(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, message: str) -> None:
    block = {"key_file": key_file(tmp_path), "operations": ["uptime"]}

    async def scenario() -> tuple[Result, Result]:
        agent, _ = await start_agent(tmp_path)
        address = agent.address
        assert address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Relay(address, mode), local_addr=("127.0.0.1", 0))
        target = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
        try:
            probe = UdpProbe(udp_spec(target, block))
            return await once(probe), await once(probe)
        finally:
            transport.close()
            await agent.close()

    with caplog.at_level(logging.WARNING, logger="probewatch.agent"):
        first, second = run(scenario())
    assert first.up, first.message
    assert (second.up, second.reason, second.message) == (False, "auth", message)
    refusals = [getattr(r, "reason", None) for r in caplog.records]
    assert refusals == (["replay"] if mode == "old-request" else [])


@pytest.mark.parametrize(("answer", "message"), [
    (lambda d: signing.sign_reply(OTHER_KEY.encode(), json.loads(d)["nonce"], '{"status":true}'),
     "reply MAC does not match (another key?)"),
    (lambda d: json.dumps({"mdp": 1, "type": "reply", "nonce": json.loads(d)["nonce"],
                           "body": '{"status": true}'}).encode(),
     "reply carries no MAC"),
    (lambda d: b'{"status": true, "version": "1.0", "operations": {}}',
     "reply is not signed (not a probewatch-mdp/1 envelope)"),
    (lambda d: b"PONG", "reply is not signed (not a JSON datagram)"),
])
def test_forged_or_unsigned_reply_fails_with_auth(
        tmp_path: Path, answer: Callable[[bytes], bytes], message: str) -> None:
    block = {"key_file": key_file(tmp_path), "send": {"operations": []}}

    async def scenario() -> Result:
        peer, target = await start_peer(answer)
        try:
            return await once(UdpProbe(udp_spec(target, block)))
        finally:
            assert peer.transport is not None
            peer.transport.close()

    result = run(scenario())
    assert (result.up, result.reason, result.code) == (False, "auth", 0)
    assert message in result.message


def test_agent_status_false_names_the_failed_operation(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-dir")
    block = {"key_file": key_file(tmp_path),
             "operations": ["uptime", {"disk_free": [missing]}]}

    result = run(probe_agent(tmp_path, block))
    assert (result.up, result.reason, result.code) == (False, "unexpected_response", 0)
    assert result.message.startswith("agent says status false: disk_free: FileNotFoundError")
    assert "uptime_seconds" in fields(result)


def test_key_file_removed_after_load_fails_the_run(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    spec = udp_spec("127.0.0.1:9", {"key_file": path, "operations": ["uptime"]})
    Path(path).unlink()
    result = run(once(UdpProbe(spec)))
    assert (result.up, result.reason) == (False, "error")
    assert "cannot read key file" in result.message


# --- config errors ---------------------------------------------------------------

UDP_FIXTURES = sorted(FIXTURES.glob("invalid-udp-*.yml"))


@pytest.mark.parametrize("path", UDP_FIXTURES, ids=[p.stem for p in UDP_FIXTURES])
def test_bad_udp_config_is_an_error_with_its_place(path: Path) -> None:
    """Each fixture names its exact messages in '# expect: ' lines (tests/fixtures)."""
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert [str(p) for p in caught.value.problems] == expected_messages(path)


def test_fixtures_cover_the_udp_checks() -> None:
    names = {p.stem.removeprefix("invalid-udp-") for p in UDP_FIXTURES}
    assert names == {"expect-json", "json-path", "json-regex", "missing-key-file", "no-send", "operation-name",
                     "operations-without-key", "target", "text-regex", "unknown-key"}


# --- probewatch probe NAME --------------------------------------------------------


def echo_in_thread(reply: bytes | None) -> tuple[int, threading.Event, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        with sock:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    _, addr = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if reply is not None:
                    sock.sendto(reply, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], stop, thread


@pytest.mark.parametrize(("reply", "exit_code", "lines"), [
    (b"PONG", 0, ["result:  up", "code:    0", "message: reply of 4 bytes"]),
    (None, 1, ["result:  down", "code:    -1", "reason:  timeout"]),
])
def test_probe_command_prints_udp_result(
        tmp_path: Path, reply: bytes | None, exit_code: int, lines: list[str]) -> None:
    import subprocess

    port, stop, thread = echo_in_thread(reply)
    config = tmp_path / "probewatch.yml"
    config.write_text(
        "probes:\n"
        "  - name: echo\n"
        "    kind: udp\n"
        f"    target: 127.0.0.1:{port}\n"
        "    timeout: 400ms\n"
        "    udp: {send: \"PING\\\\r\\\\n\", expect: PONG}\n")
    try:
        done = subprocess.run(probewatch_argv("probe", "echo", f"--config.file={config}"),
                              capture_output=True, text=True, timeout=30, cwd=ROOT)
    finally:
        stop.set()
        thread.join(5)
    assert done.returncode == exit_code, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"probe:   echo (udp 127.0.0.1:{port})"
    for line in lines:
        assert line in out
    assert any(s.startswith("  probewatch_probe_up{") and s.endswith(f" {1 - exit_code}")
               for s in out)
