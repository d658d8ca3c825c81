"""Connect to host:port; optionally send, expect a reply, and say bye (Moniteur's connect.py).

Up when the connection opens and, with ``expect``, the reply contains it before
the peer closes or the timeout.  Return code 0 once connected, -1 when no
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
from dataclasses import dataclass
from typing import Any

from .base import Kind, Result, unescape
from .expectations import TextExpectation, TextMatcher, decode_reply, shown
from .netaddr import is_ip, split_host_port, target_problems
from .oserrors import os_error_reason
from .spec import ProbeSpec
from .tls import TlsOptions, ssl_context, ssl_reason, unreadable

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
        expect: the reply must contain this literal text, or match {regex: PATTERN}; read until it
            matches, the peer closes, or the timeout.
        bye: written before closing.
        tls: speak TLS after connecting.
        server_name (default the target's host): with tls, the name sent in SNI and verified.
        ca_file: with tls, a PEM bundle of CAs trusted instead of the system store.
        insecure_skip_verify: with tls, accept any certificate.
    """

    send: str = ""
    expect: TextExpectation = ""
    bye: str = ""
    tls: bool = False
    server_name: str = ""
    ca_file: str = ""
    insecure_skip_verify: bool = False

    def check(self) -> list[tuple[str, str]]:
        out = []
        if self.ca_file and not self.tls:
            out.append(("ca_file", "is used only with tls: true"))
        if problem := unreadable(self.ca_file):
            out.append(("ca_file", problem))
        return out


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
        self.matcher = TextMatcher(self.options.expect) if self.options.expect else None
        self.plain = not (self.send or self.bye or self.matcher or self.options.tls)
        self.tls: TlsOptions | None = None
        if self.options.tls:
            self.tls = TlsOptions(ca_file=self.options.ca_file, server_name=self.options.server_name,
                                  insecure_skip_verify=self.options.insecure_skip_verify)

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
            server_hostname = self.options.server_name or self.host
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=context, server_hostname=server_hostname)
        try:
            if self.send:
                writer.write(self.send)
                await writer.drain()
            reply = b""
            if self.matcher is not None:
                while len(reply) < READ_LIMIT:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    reply += chunk
                    if self.matcher.found_in(decode_reply(reply)):
                        break
                text = decode_reply(reply)
                if not self.matcher.found_in(text):
                    how = "peer closed" if len(reply) < READ_LIMIT else "read limit reached"
                    return Result.fail("unexpected_response",
                                       f"reply did not contain {self.matcher.describe} ({how}); "
                                       f"got {shown(text)}", code=0)
            if self.bye:
                writer.write(self.bye)
                await writer.drain()
            message = f"connected to {self.spec.target}"
            if self.matcher is not None:
                message += f"; reply matched {self.matcher.describe}"
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

    __slots__ = ("_done", "_fd", "_loop", "_sock", "probe")

    def __init__(self, probe: TcpProbe) -> None:
        self.probe = probe
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._done: Callable[[Result], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, done: Callable[[Result], None]) -> None:
        self._loop, self._done = loop, done
        probe = self.probe
        try:
            sock = socket.socket(probe.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            self._finish(probe.failure(exc))
            return
        self._sock = sock
        err = sock.connect_ex(probe.address)
        if err in _PENDING:
            self._fd = sock.fileno()
            loop.add_writer(self._fd, self._writable)
        else:
            self._end(err)

    def _writable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        assert self._loop is not None
        self._loop.remove_writer(self._fd)
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
            if self._fd >= 0 and self._loop is not None:
                self._loop.remove_writer(self._fd)
            sock.close()
