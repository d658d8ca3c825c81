"""The agent's UDP server: checks each signed request, runs the operations it names.

Order of checks for a datagram: envelope form, MAC (probes.signing), age
against ``max_skew``, nonce not seen before.  A refused datagram gets, if it
was an envelope at all, a short unsigned refusal no larger than the datagram
itself (so the agent never amplifies traffic).  The first refusal of each
reason in ``log_interval`` is logged in full, the rest summed up in one line
("refused 9,999 more datagrams (bad signature) in the last 10s").  No
datagram, however malformed, can stop the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import Any

from exporter import __version__
from exporter.logs import Throttle
from probes import signing
from probes.netaddr import join_host_port

from .operations import Operation
from .replay import ReplayCache

log = logging.getLogger("probewatch.agent")

MAX_OPERATIONS = 32
MAX_CONCURRENT = 64
UDP_PAYLOAD_LIMIT = 65507


def format_address(addr: Any) -> str:
    return join_host_port(addr[0], addr[1])


class RequestError(Exception):
    """The signed body asks for something the agent cannot do."""


def parse_operations(body: str, known: dict[str, Operation]) -> list[tuple[Operation, list[str]]]:
    """The operations a request body names, with their arguments."""
    try:
        request = json.loads(body)
    except ValueError:
        raise RequestError("body is not JSON") from None
    if not isinstance(request, dict):
        raise RequestError("body must be a JSON object")
    items = request.get("operations", [])
    if not isinstance(items, list):
        raise RequestError("operations must be a list")
    if len(items) > MAX_OPERATIONS:
        raise RequestError(f"at most {MAX_OPERATIONS} operations per request")
    picked: list[tuple[Operation, list[str]]] = []
    for item in items:
        args: list[str] = []
        if isinstance(item, str):
            name = item
        elif isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise RequestError(f"arguments of {name!r} must be a list of strings")
        else:
            raise RequestError("each operation is a name or {name: [arguments]}")
        op = known.get(name)
        if op is None:
            raise RequestError(f"unknown operation {name!r} (known: {', '.join(known)})")
        if args and not op.arguments:
            raise RequestError(f"operation {name!r} takes no arguments")
        picked.append((op, args))
    return picked


def collect(picked: list[tuple[Operation, list[str]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the operations; results by operation name, and errors by operation name."""
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for op, args in picked:
        try:
            values = op.collect(list(args))
            clean = {str(k): float(v) for k, v in values.items()}
            bad = [k for k, v in clean.items() if not math.isfinite(v)]
            if bad:
                raise ValueError(f"not a finite number: {', '.join(bad)}")
        except Exception as exc:  # one failing operation must not sink the rest
            errors[op.name] = f"{type(exc).__name__}: {exc}"
            continue
        results.setdefault(op.name, {}).update(clean)
    return results, errors


class AgentServer(asyncio.DatagramProtocol):
    """Answers signed MDP requests; ``address`` is where it listens once started."""

    def __init__(
        self,
        key: bytes,
        operations: dict[str, Operation],
        *,
        max_skew: float = 30.0,
        replay_capacity: int = 65536,
        operation_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        log_interval: float = 10.0,
    ) -> None:
        self.key = key
        self.operations = operations
        self.max_skew = max_skew
        self.operation_timeout = operation_timeout
        self.replay = ReplayCache(max_skew, replay_capacity)
        self.clock = clock
        self.address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusals = Throttle(log, "refused {count} more datagram{s} ({what}) in the last {seconds}",
                                 log_interval, field="reason", describe=lambda r: r.replace("_", " "))
        self.errors = Throttle(log, "{count} more error{s} handling datagrams in the last {seconds}",
                               log_interval, field="error")

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind ``host:port`` (port 0: any free one) and return the bound address.

        An empty host listens on every address (IPv6 and IPv4 where possible).
        """
        loop = asyncio.get_running_loop()
        if host:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self, local_addr=(host, port))
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self, sock=_any_address(port))
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self.address = (sockname[0], int(sockname[1]))
        return self.address

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.refusals.close()
        self.errors.close()

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error", extra={"error": str(exc)})

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._receive(data, addr)
        except Exception as exc:  # the last guard: no datagram stops the agent
            self.errors.log(logging.ERROR, type(exc).__name__, "unexpected error handling a datagram",
                            extra={"peer": format_address(addr)}, exc_info=True)

    def _refuse(self, addr: Any, data: bytes, reason: str, detail: str,
                nonce: str | None, answer: bool = True) -> None:
        self.refusals.log(logging.WARNING, reason, "refused request", extra={
            "reason": reason, "peer": format_address(addr), "detail": detail, "bytes": len(data)})
        reply = signing.refusal(reason, nonce)
        if answer and self._transport is not None and len(reply) <= len(data):
            self._transport.sendto(reply, addr)

    def _receive(self, data: bytes, addr: Any) -> None:
        try:
            request = signing.open_request(self.key, data)
        except signing.BadEnvelope as exc:
            self._refuse(addr, data, exc.reason, exc.detail, exc.nonce,
                         answer=exc.reason != "not_mdp")
            return
        now = self.clock()
        skew = now - request.timestamp
        if abs(skew) > self.max_skew:
            when = f"{skew:.1f}s old" if skew > 0 else f"{-skew:.1f}s ahead of this agent's clock"
            self._refuse(addr, data, "stale",
                         f"timestamp is {when} (allowed skew: {self.max_skew:g}s)", request.nonce)
            return
        if self.replay.seen(request.nonce):
            self._refuse(addr, data, "replay", "this nonce was answered before", request.nonce)
            return
        if len(self._tasks) >= MAX_CONCURRENT:
            self._refuse(addr, data, "busy", f"{MAX_CONCURRENT} requests in progress",
                         request.nonce)
            return
        if not self.replay.remember(request.nonce, request.timestamp, now):
            self._refuse(addr, data, "busy", "replay cache is full", request.nonce)
            return
        task = asyncio.get_running_loop().create_task(self._answer(request, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: signing.SignedRequest, addr: Any) -> None:
        peer = format_address(addr)
        reply: dict[str, Any] = {"status": True, "version": __version__, "operations": {}}
        try:
            picked = parse_operations(request.body, self.operations)
        except RequestError as exc:
            reply.update(status=False, error=str(exc))
        else:
            loop = asyncio.get_running_loop()
            try:
                # statvfs and /proc reads can block (a hung NFS mount): off the loop.
                results, errors = await asyncio.wait_for(
                    loop.run_in_executor(None, collect, picked), self.operation_timeout)
            except TimeoutError:
                reply.update(status=False,
                             error=f"operations took longer than {self.operation_timeout:g}s")
            else:
                reply["operations"] = results
                if errors:
                    reply.update(status=False, errors=errors)
        body = json.dumps(reply, separators=(",", ":"))
        datagram = signing.sign_reply(self.key, request.nonce, body)
        if len(datagram) > UDP_PAYLOAD_LIMIT:
            body = json.dumps({"status": False, "version": __version__, "operations": {},
                               "error": "reply too large for one datagram"})
            datagram = signing.sign_reply(self.key, request.nonce, body)
        log.debug("answered request", extra={
            "peer": peer, "operations": ",".join(reply["operations"]), "status": reply["status"]})
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(datagram, addr)


def _any_address(port: int) -> socket.socket:
    """A socket on every address: IPv6 and IPv4 in one where the host allows."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    return sock
