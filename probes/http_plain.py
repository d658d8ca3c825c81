"""Plain HTTP straight on a non-blocking socket: connect, send and read driven by the
socket's readiness callbacks, with no asyncio transport and one future per exchange.

On loopback and fast links the request goes out with the connect; the reply is
parsed by ``probes.http_wire`` as it arrives.  The socket is closed when the
reply is complete, when the run fails and when it is cancelled.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import TYPE_CHECKING

from .http_addresses import addresses_of
from .http_failures import os_failure
from .http_wire import ResponseReader

if TYPE_CHECKING:
    from .http_transport import Request


async def plain(req: Request, reader: ResponseReader, wire: bytes, host: str, port: int,
                via: str) -> None:
    """Plain HTTP straight on a non-blocking socket: the first address that accepts gets the request."""
    req.stage = f"{via}connect"
    addresses = await addresses_of(host, port, req.ip_family, via)
    loop = asyncio.get_running_loop()
    for i, (family, address) in enumerate(addresses):
        exchange = _PlainExchange(loop, req, reader, wire)
        try:
            await exchange.run(family, address)
            return
        except OSError as exc:
            if req.stage != "response":  # could not connect: the next address, or the failure
                if i + 1 < len(addresses):
                    continue
                raise os_failure(exc, via, host, port) from None
            raise


class _PlainExchange:
    """Connect, send and read driven by the socket's readiness callbacks: no transport, one future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, req: Request, reader: ResponseReader,
                 wire: bytes) -> None:
        self.loop, self.req, self.reader, self.out = loop, req, reader, wire
        self.buf = bytearray()
        self.sock: socket.socket | None = None
        self.fd = -1
        self.done: asyncio.Future[None] = loop.create_future()
        self.reading = self.writing = False

    async def run(self, family: int, address: tuple[str, int]) -> None:
        sock = self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            self.fd = sock.fileno()
            err = sock.connect_ex(address)
            if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
                raise OSError(err, os.strerror(err))
            # On loopback and fast links the handshake is done by now: send at once,
            # and wait for writability only when the socket is not connected yet.
            self._send(first=True)
            await self.done
        finally:
            if self.writing:
                self.loop.remove_writer(self.fd)
            if self.reading:
                self.loop.remove_reader(self.fd)
            sock.close()

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def _send(self, first: bool = False) -> None:
        assert self.sock is not None
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            if not (first and exc.errno == errno.ENOTCONN):
                self._fail(exc)
                return
            n = 0
        if n and self.req.stage != "response":
            self.req.stage = "response"  # connected: from now on a failure is the reply's
            self.loop.add_reader(self.fd, self._on_read)
            self.reading = True
        self.out = self.out[n:]
        if self.out:
            if not self.writing:
                self.loop.add_writer(self.fd, self._on_writable)
                self.writing = True
        elif self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False

    def _on_writable(self) -> None:
        assert self.sock is not None
        if self.req.stage != "response":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(OSError(err, os.strerror(err)))
                return
        self._send()

    def _on_read(self) -> None:
        assert self.sock is not None
        if self.done.done():
            return
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:
            self._fail(exc)
            return
        try:
            if not data:
                self.reader.at_eof()
                self.done.set_result(None)
                return
            self.buf += data
            if self.reader.feed(self.buf):
                self.done.set_result(None)
        except Exception as exc:  # the reply is not HTTP, too large, cut short: the run's failure
            self._fail(exc)
