"""Kind udp: send one datagram, wait for one reply, check it.

Plain mode talks to any UDP responder (``send`` and ``expect``).  With
``key_file`` the request travels in the signed envelope of probes.signing and
the reply must carry a valid MAC over its body and this request's nonce, or the
run fails with reason ``auth``.  With ``operations`` the probe asks a
``probewatch agent`` for diagnostics and exports each number it gets back as
``probewatch_probe_value{field="..."}``.

Return code: 0 when a reply arrived (whatever it said), -1 when none did.

    - name: mdp-web1
      kind: udp
      target: 127.0.0.1:12345
      udp:
        key_file: /etc/probewatch/agent.key
        operations: [load_average, mem_available, {disk_free: [/]}]
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import readings as catalogue
from . import signing
from .base import Kind, Reading, Result, unescape
from .durations import format_duration
from .expectations import Expectations, decode_reply, expectation_list, judge, load_json, shown
from .netaddr import split_host_port, target_problems
from .oserrors import os_error_reason
from .spec import ProbeSpec

UDP_PAYLOAD_LIMIT = 65507
OPERATION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
VALUE_METRIC = catalogue.VALUE.name  # shared with the json kind: one HELP line (probes/readings.py)
# What an agent's refusal means to the person reading the failure message.
REFUSAL_HINTS = {
    "bad_signature": "bad signature: is key_file the agent's key?",
    "stale": "stale timestamp: are the clocks of prober and agent in sync?",
    "replay": "nonce seen before (replayed request)",
    "busy": "agent is busy",
    "malformed": "malformed request envelope",
}

OperationItem = str | dict[str, list[str]]


@dataclass
class UdpOptions:
    """Options of the udp kind (the ``udp:`` block of a probe).

    Options:
        send: what to send: a string (escapes honoured) or a mapping, sent as compact JSON.
        operations: ask a probewatch agent for these operations instead of send; needs key_file.
        expect: what the reply must hold: text, {regex: ...}, {not_regex: ...} or {path: ...} items
            (JSON path checks of a JSON reply); the one expectation list of every kind.
        key_file: sign the request with this key and accept only replies signed with it.
    """

    send: str | dict[str, Any] = ""
    operations: list[OperationItem] = field(default_factory=list)
    expect: Expectations = field(default_factory=list)
    key_file: str = ""
    MOVED: ClassVar[dict[str, str]] = {"expect_json": "expect (JSON checks are {path: ...} items of it)"}

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.send and self.operations:
            out.append(("operations", "set either send or operations, not both"))
        if not self.send and not self.operations:
            out.append(("send", "is required (or operations, to ask a probewatch agent)"))
        for i, item in enumerate(self.operations):
            names = [item] if isinstance(item, str) else list(item)
            if isinstance(item, dict) and len(item) != 1:
                out.append((f"operations[{i}]", "must be a name or one {name: [arguments]}"))
            out.extend(
                (f"operations[{i}]", f"{name!r} is not an operation name (a-z, 0-9, _)")
                for name in names
                if not OPERATION_NAME.match(name)
            )
        if self.operations and not self.key_file:
            out.append(("key_file", "is required with operations: the agent answers only"
                        " signed requests"))
        if self.key_file:
            try:
                signing.load_key(self.key_file)
            except signing.KeyFileError as exc:
                out.append(("key_file", str(exc)))
        if len(self.body().encode()) > UDP_PAYLOAD_LIMIT:
            out.append(("send", f"is larger than one UDP datagram ({UDP_PAYLOAD_LIMIT} bytes)"))
        return out

    def body(self) -> str:
        """The request text, before any signing."""
        if self.operations:
            return json.dumps({"version": "1", "operations": self.operations},
                              separators=(",", ":"))
        if isinstance(self.send, dict):
            return json.dumps(self.send, separators=(",", ":"))
        return unescape(self.send)


class _OneReply(asyncio.DatagramProtocol):
    """Resolves ``reply`` with the first datagram, or with the socket's error."""

    def __init__(self, reply: asyncio.Future[bytes]) -> None:
        self.reply = reply

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


def _socket_failure(exc: OSError, target: str) -> Result:
    if isinstance(exc, socket.gaierror):
        return Result.fail("unreachable", f"cannot resolve {target}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Result.fail("refused", f"{target} refused the datagram (ICMP port unreachable)")
    return Result.fail(os_error_reason(exc), f"{target}: {exc.strerror or exc}")


def value_readings(doc: Any) -> list[Reading]:
    """One probewatch_probe_value reading per number in the reply's ``operations``."""
    ops = doc.get("operations") if isinstance(doc, dict) else None
    if not isinstance(ops, dict):
        return []
    found: dict[str, float] = {}
    for name, result in ops.items():
        values = result if isinstance(result, dict) else {name: result}
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[str(key)] = float(value)
    return [catalogue.VALUE.reading(v, k) for k, v in sorted(found.items())]


def agent_errors(doc: dict[str, Any]) -> str:
    errors = doc.get("errors")
    parts = [str(doc["error"])] if doc.get("error") else []
    if isinstance(errors, dict):
        parts += [f"{name}: {message}" for name, message in errors.items()]
    return "; ".join(parts) or "no error given"


class UdpProbe(Kind[UdpOptions]):
    Options = UdpOptions

    def __init__(self, spec: ProbeSpec[UdpOptions]) -> None:
        super().__init__(spec)
        self.host, self.port = split_host_port(spec.target)
        self.expect = expectation_list(self.options.expect)
        self.wants_json = any(item.path for item in self.expect)

    @classmethod
    def validate(cls, spec: ProbeSpec[UdpOptions]) -> list[tuple[str, str]]:
        return target_problems(spec.target)

    async def run(self, deadline: float) -> Result:
        key = b""
        if self.options.key_file:
            try:
                key = signing.load_key(self.options.key_file)
            except signing.KeyFileError as exc:
                return Result.fail("error", str(exc))
        body = self.options.body()
        nonce = ""
        if key:
            datagram, nonce = signing.sign_request(key, body)
        else:
            datagram = body.encode()
        reply = await self._exchange(datagram)
        if isinstance(reply, Result):
            return reply
        return self._judge(reply, key, nonce)

    async def _exchange(self, datagram: bytes) -> bytes | Result:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        target = self.spec.target
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _OneReply(waiter), remote_addr=(self.host, self.port))
        except OSError as exc:
            return _socket_failure(exc, target)
        try:
            transport.sendto(datagram)
            return await waiter  # the scheduler cuts the wait at the deadline: timed_out()
        except OSError as exc:
            return _socket_failure(exc, target)
        finally:
            transport.close()

    def timed_out(self, timeout: float) -> Result:
        return Result.fail("timeout", f"no reply from {self.spec.target} within {format_duration(timeout)}")

    def _judge(self, data: bytes, key: bytes, nonce: str) -> Result:
        if key:
            try:
                opened = signing.open_reply(key, nonce, data)
            except signing.BadEnvelope as exc:
                return Result.fail("auth", exc.detail, code=0)
            if isinstance(opened, signing.Refusal):
                hint = REFUSAL_HINTS.get(opened.reason, opened.reason)
                reason = "error" if opened.reason == "busy" else "auth"
                return Result.fail(reason, f"agent refused the request: {hint}", code=0)
            text = opened
        else:
            text = decode_reply(data)
        doc: Any = None
        try:
            doc = load_json(text, "reply")
        except ValueError as exc:
            if self.wants_json:
                return Result.fail("unexpected_response", str(exc), code=0)
        readings = value_readings(doc)
        if key or self.options.operations:
            if self.options.operations and not isinstance(doc, dict):
                return Result.fail("unexpected_response",
                                   f"agent reply is not a JSON object: {shown(text)}", code=0)
            if isinstance(doc, dict) and doc.get("status") is False:
                return Result.fail("unexpected_response",
                                   f"agent says status false: {agent_errors(doc)}",
                                   code=0, readings=readings)
        if unmet := judge(self.expect, text, doc=doc):
            return Result.fail("unexpected_response", unmet, code=0, readings=readings)
        if readings:
            message = f"{len(readings)} values from agent {doc.get('version', '?')}"
        else:
            message = f"reply of {len(data)} bytes"
        return Result.ok(code=0, message=message, readings=readings)
