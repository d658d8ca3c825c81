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
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import Kind, Result, unescape
from .expectations import Expectations, decode_reply, expectation_list, judge
from .netaddr import is_ip, split_host_port, target_problems
from .oserrors import os_error_reason
from .tls import TlsOptions, ssl_context, ssl_reason

READ_LIMIT = 64 * 1024


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


class TcpProbe(Kind):
    __doc__ = __doc__
    Options = TcpOptions

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.options: TcpOptions = spec.options
        self.host, self.port = split_host_port(spec.target)
        self.literal_ip = is_ip(self.host)  # no resolver round trip for addresses
        self.send = unescape(self.options.send).encode()
        self.bye = unescape(self.options.bye).encode()
        self.expect = expectation_list(self.options.expect)
        self.tls: TlsOptions | None = self.options.tls
        self.plain = not (self.send or self.bye or self.expect or self.tls)

    @classmethod
    def validate(cls, spec: Any) -> list[tuple[str, str]]:
        return target_problems(spec.target)

    async def run(self, deadline: float) -> Result:
        try:
            if self.plain:
                return await self._connect_only()
            return await self._converse()
        except ConnectionRefusedError:
            return Result.fail("refused", f"connection to {self.spec.target} refused")
        except socket.gaierror as exc:
            return Result.fail("unreachable", f"cannot resolve {self.host}: {exc.strerror}")
        except ssl.SSLError as exc:
            return Result.fail("tls", f"TLS handshake with {self.spec.target} failed: {ssl_reason(exc)}")
        except OSError as exc:
            return Result.fail(os_error_reason(exc), f"{self.spec.target}: {exc.strerror or exc}")

    async def _connect_only(self) -> Result:
        """Just a connect: a bare non-blocking socket is far cheaper than streams."""
        loop = asyncio.get_running_loop()
        if self.literal_ip:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            address: Any = (self.host, self.port)
        else:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        finally:
            sock.close()
        return Result.ok(0, f"connected to {self.spec.target}")

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
