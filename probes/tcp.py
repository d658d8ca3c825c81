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
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from .base import Kind, Result, unescape
from .expectations import TextExpectation, TextMatcher, decode_reply, shown
from .netaddr import is_ip, split_host_port, target_problems
from .oserrors import os_error_reason
from .tls import TlsOptions, ssl_context, ssl_reason, unreadable

READ_LIMIT = 64 * 1024


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
        self.matcher = TextMatcher(self.options.expect) if self.options.expect else None
        self.plain = not (self.send or self.bye or self.matcher or self.options.tls)
        self.tls: TlsOptions | None = None
        if self.options.tls:
            self.tls = TlsOptions(ca_file=self.options.ca_file, server_name=self.options.server_name,
                                  insecure_skip_verify=self.options.insecure_skip_verify)

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
