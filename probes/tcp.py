"""Connect to host:port; optionally send, expect a reply, and say bye (Moniteur's connect.py).

Up when the connection opens and, with ``expect``, the reply meets every item of
it (probes/expectations.py) before the peer closes or the timeout.  A ``tls:``
block (even ``tls: {}``) turns TLS on.  Return code 0 once connected, -1 when no
connection was made.  ``send`` and ``bye`` honour \\r \\n \\t escapes.

    - name: pop3
      kind: tcp
      target: 127.0.0.1:110
      tcp: {expect: "+OK POP3", bye: "QUIT\\r\\n"}
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import writable
from .base import Kind, Result, unescape
from .expectations import Expectations, decode_reply, expectation_list, judge
from .netaddr import is_ip, split_host_port, target_problems
from .oserrors import os_error_reason
from .spec import ProbeSpec
from .tls import TlsOptions, ssl_context, ssl_reason

READ_LIMIT = 64 * 1024
# connect_ex on a non-blocking socket: the handshake goes on, wait until writable.
_PENDING = (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY)


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


@dataclass
class TcpOptions:
    """``tcp:`` block.

    Options:
        send: written after connecting; \\r \\n \\t \\\\ \\xNN escapes honoured.
        expect: what the reply must hold: text, {regex: ...}, {not_regex: ...} or {path: ...} items;
            read until every item holds, the peer closes, or the timeout.
        bye: written before closing.
        tls: speak TLS after connecting (tls: {} for the defaults); the one tls block of every kind.
    """

    send: str = ""
    expect: Expectations = field(default_factory=list)
    bye: str = ""
    tls: TlsOptions | None = None
    MOVED: ClassVar[dict[str, str]] = {
        "ca_file": "tls.ca_file", "server_name": "tls.server_name",
        "insecure_skip_verify": "tls.insecure_skip_verify"}

    @staticmethod
    def old_value(key: str, value: Any) -> str:
        if key == "tls" and isinstance(value, bool):
            return ("is a block now: write tls: {} to turn TLS on (or tls: {ca_file: ...})"
                    if value else "is a block now: leave it out for plain TCP")
        return ""


class TcpProbe(Kind[TcpOptions]):
    Options = TcpOptions

    def __init__(self, spec: ProbeSpec[TcpOptions]) -> None:
        super().__init__(spec)
        self.host, self.port = split_host_port(spec.target)
        self.literal_ip = is_ip(self.host)  # no resolver round trip for addresses
        self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.address: Any = (self.host, self.port)
        self.connected = f"connected to {spec.target}"
        self.send = unescape(self.options.send).encode()
        self.bye = unescape(self.options.bye).encode()
        self.expect = expectation_list(self.options.expect)
        self.tls: TlsOptions | None = self.options.tls
        self.plain = not (self.send or self.bye or self.expect or self.tls)

    @classmethod
    def validate(cls, spec: ProbeSpec[TcpOptions]) -> list[tuple[str, str]]:
        return target_problems(spec.target)

    async def run(self, deadline: float) -> Result:
        try:
            if self.plain:
                return await self._connect_only()
            return await self._converse()
        except OSError as exc:
            return self.failure(exc)

    def failure(self, exc: OSError) -> Result:
        """The failed Result for what a connect or conversation raised."""
        if isinstance(exc, ConnectionRefusedError):
            return Result.fail("refused", f"connection to {self.spec.target} refused")
        if isinstance(exc, socket.gaierror):
            return Result.fail("unreachable", f"cannot resolve {self.host}: {exc.strerror}")
        if isinstance(exc, ssl.SSLError):
            return Result.fail("tls", f"TLS handshake with {self.spec.target} failed: {ssl_reason(exc)}")
        return Result.fail(os_error_reason(exc), f"{self.spec.target}: {exc.strerror or exc}")

    def connector(self) -> Connect | None:
        """A callback-driven connect for the scheduler's fast path, or None when this probe needs ``run``.

        Only a plain connect to an address qualifies: no resolver, no
        conversation.  It does what ``run`` does without a task, coroutines or
        futures, which are most of what a plain connect costs above the kernel.
        """
        return Connect(self) if self.plain and self.literal_ip else None

    async def _connect_only(self) -> Result:
        """Just a connect: a bare non-blocking socket and one writability wait.

        No streams, and for an address no resolver round trip nor asyncio's
        address parsing (loop.sock_connect's): the cheapest a connect can be
        from asyncio, most of the CPU of a plain tcp probe.
        """
        loop = asyncio.get_running_loop()
        if self.literal_ip:
            family, address = self.family, self.address
        else:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            err = sock.connect_ex(address)
            if err in _PENDING:
                done = loop.create_future()
                fd = sock.fileno()
                loop.add_writer(fd, _wake, done)
                try:
                    await done
                finally:
                    loop.remove_writer(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))  # OSError picks the subclass (refused...)
        finally:
            sock.close()
        return Result.ok(0, self.connected)

    async def _converse(self) -> Result:
        context, server_hostname = None, None
        if self.tls is not None:
            # Shared with the http kind: one context per distinct options, rebuilt when a file changes.
            context = ssl_context(self.tls)
            server_hostname = self.tls.server_name or self.host
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=context, server_hostname=server_hostname)
        try:
            if self.send:
                writer.write(self.send)
                await writer.drain()
            reply = b""
            if self.expect:
                unmet = "?"
                while len(reply) < READ_LIMIT:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    reply += chunk
                    if not (unmet := judge(self.expect, decode_reply(reply))):
                        break
                if unmet:
                    unmet = judge(self.expect, decode_reply(reply))
                if unmet:
                    how = "peer closed" if len(reply) < READ_LIMIT else "read limit reached"
                    return Result.fail("unexpected_response", f"{unmet} ({how})", code=0)
            if self.bye:
                writer.write(self.bye)
                await writer.drain()
            message = f"connected to {self.spec.target}"
            if len(self.expect) == 1:
                message += f"; reply matched {self.expect[0].describe}"
            elif self.expect:
                message += f"; reply met {len(self.expect)} expectations"
            return Result.ok(0, message)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


class Connect:
    """One plain connect driven by loop callbacks (TcpProbe.connector).

    ``start(loop, done)`` begins it; ``done(result)`` is called exactly once,
    maybe before ``start`` returns, unless ``cancel()`` came first (then never).
    """

    __slots__ = ("_done", "_fd", "_loop", "_sock", "_waiter", "probe")

    def __init__(self, probe: TcpProbe) -> None:
        self.probe = probe
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: writable.Writable | None = None  # None: loop.add_writer is used
        self._fd = -1
        self._done: Callable[[Result], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, done: Callable[[Result], None]) -> None:
        self._done = done
        if self._loop is not loop:
            self._loop, self._waiter = loop, writable.for_loop(loop)
        probe = self.probe
        try:
            sock = socket.socket(probe.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            self._finish(probe.failure(exc))
            return
        self._sock = sock
        err = sock.connect_ex(probe.address)
        if err in _PENDING:
            fd = self._fd = sock.fileno()
            if self._waiter is not None:
                self._waiter.add(fd, self._writable)
            else:
                loop.add_writer(fd, self._writable)
        else:
            self._end(err)

    def _writable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._waiter is None:
            assert self._loop is not None
            self._loop.remove_writer(self._fd)
        # (A Writable's registration was one-shot: closing the socket drops it.)
        self._end(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _end(self, err: int) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        probe = self.probe
        self._finish(Result.ok(0, probe.connected) if not err else probe.failure(OSError(err, os.strerror(err))))

    def _finish(self, result: Result) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(result)

    def cancel(self) -> None:
        """Stop waiting (a deadline, a stop): close the socket; ``done`` is not called."""
        self._done = None
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._waiter is not None:
                self._waiter.discard(self._fd)
            elif self._fd >= 0 and self._loop is not None:
                self._loop.remove_writer(self._fd)
            sock.close()
