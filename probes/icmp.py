"""Send ICMP echo requests and count the replies (Moniteur's ping.py).

Up while the share of lost requests stays within ``max_loss`` (by default: up
when at least one reply came back).  Return code: replies received.  Extra
series: ``probewatch_probe_icmp_rtt_seconds{stat="avg|max"}`` (only when a
reply came back) and ``probewatch_probe_icmp_loss_ratio``.

    - name: gateway
      kind: icmp
      target: 127.0.0.1
      icmp: {count: 3, interval: 200ms, reply_timeout: 1s}

Every icmp probe of the process shares one socket per address family, read by
the event loop: thousands of probes cost no thread and no socket each.  The
socket is an unprivileged datagram socket where net.ipv4.ping_group_range
allows one, else a raw socket (CAP_NET_RAW).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket, async_resolve
from icmplib.exceptions import ICMPLibError, NameLookupError, SocketPermissionError

from . import readings as readings_catalogue
from .base import Kind, Result
from .durations import Duration, format_duration
from .netaddr import is_ip
from .oserrors import os_error_reason
from .spec import ProbeSpec

RTT = readings_catalogue.ICMP_RTT.name
LOSS = readings_catalogue.ICMP_LOSS.name
MAX_COUNT = 100
MAX_PAYLOAD = 65000
RECEIVE_BUFFER = 4 * 1024 * 1024
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
HOSTNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")


@dataclass
class IcmpOptions:
    """``icmp:`` block.

    Options:
        count: echo requests per run, 1 to 100.
        interval: time between two requests of a run.
        payload_size: bytes of payload in each request, 0 to 65000.
        ip_family: ip4 or ip6 resolves a host name in that family only; auto resolves it in IPv4.
        max_loss: up while the share of lost requests is at most this (unset: one reply is enough).
        reply_timeout: how long to wait for each reply (unset: until the probe's timeout).
    """

    count: int = 3
    interval: Duration = 1.0
    payload_size: int = 56
    ip_family: Literal["auto", "ip4", "ip6"] = "auto"
    max_loss: float | None = None
    reply_timeout: Duration | None = None  # Moniteur's "arguments=HOST, 1000": wait per reply
    MOVED: ClassVar[dict[str, str]] = {"timeout_ms": "reply_timeout (a duration: 1000 ms is 1s)"}

    @staticmethod
    def old_value(key: str, value: Any) -> str:
        if key == "ip_family" and value in (4, 6, "4", "6"):
            return f"{value} is now spelled ip{value} (auto, ip4 or ip6)"
        return ""

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not 1 <= self.count <= MAX_COUNT:
            out.append(("count", f"must be from 1 to {MAX_COUNT}"))
        if not 0 <= self.payload_size <= MAX_PAYLOAD:
            out.append(("payload_size", f"must be from 0 to {MAX_PAYLOAD} bytes"))
        if self.max_loss is not None and not 0 <= self.max_loss < 1:
            out.append(("max_loss", "must be a ratio from 0 (no loss allowed) up to, not including, 1"))
        if self.reply_timeout is not None and self.reply_timeout <= 0:
            out.append(("reply_timeout", "must be longer than 0s"))
        return out


def target_family(host: str, ip_family: str) -> int:
    if is_ip(host):
        return 6 if ":" in host else 4
    return 6 if ip_family == "ip6" else 4


def reply_wait(spec: ProbeSpec[IcmpOptions]) -> float | None:
    """Seconds to wait for each reply: reply_timeout; None: until the run's deadline."""
    return spec.options.reply_timeout


class IcmpProbe(Kind[IcmpOptions]):
    Options = IcmpOptions

    def __init__(self, spec: ProbeSpec[IcmpOptions]) -> None:
        super().__init__(spec)
        self.family = target_family(spec.target, self.options.ip_family)
        self.wait = reply_wait(spec)
        self._sent: list[_Echo] = []
        self._send_errors: list[str] = []
        self.payload = (b"probewatch icmp " * (self.options.payload_size // 16 + 1))[
            : self.options.payload_size]

    @classmethod
    def validate(cls, spec: ProbeSpec[IcmpOptions]) -> list[tuple[str, str]]:
        opts = spec.options
        host = spec.target
        out = []
        if is_ip(host):
            family = 6 if ":" in host else 4
            if opts.ip_family != "auto" and opts.ip_family != f"ip{family}":
                out.append(("icmp.ip_family", f"is {opts.ip_family} but {host} is an IPv{family} address"))
        elif not host or not set(host) <= HOSTNAME_CHARS or ".." in host:
            out.append(("target", f"{host!r} is neither an IP address nor a host name"))
        sending = (opts.count - 1) * opts.interval
        budget = spec.timeout
        how = f"{opts.count} requests {format_duration(opts.interval)} apart"
        if opts.reply_timeout is not None:
            if sending + opts.reply_timeout > budget:
                out.append(("icmp.reply_timeout", f"{how} plus {format_duration(opts.reply_timeout)}"
                            " for the last reply "
                            f"do not fit in the probe's timeout ({format_duration(spec.timeout)})"))
        elif sending >= budget:
            out.append(("icmp.interval", f"{how} do not fit in the probe's timeout "
                        f"({format_duration(spec.timeout)}); lower count or interval"))
        return out

    @classmethod
    def preflight(cls, spec: ProbeSpec[IcmpOptions]) -> str | None:
        """Say how to fix it when this process may open no ICMP socket at all."""
        family = target_family(spec.target, spec.options.ip_family)
        try:
            open_socket(family).close()
        except SocketPermissionError:
            return permission_message()
        except (ICMPLibError, OSError) as exc:
            return f"cannot open an ICMPv{family} socket: {exc}"
        return None

    @classmethod
    def shutdown(cls) -> None:
        for pinger in list(_PINGERS.values()):
            pinger.close()
        _PINGERS.clear()

    async def run(self, deadline: float) -> Result:
        loop = asyncio.get_running_loop()
        host = self.spec.target
        # Kept on the instance: a run cut at its deadline reports the replies so far (timed_out).
        sent: list[_Echo] = []
        send_errors: list[str] = []
        self._sent, self._send_errors = sent, send_errors
        try:
            address = host if is_ip(host) else (await async_resolve(host, self.family))[0]
        except NameLookupError:
            return Result.fail("unreachable", f"cannot resolve {host} (IPv{self.family})")
        try:
            pinger = pinger_for(loop, self.family)
        except SocketPermissionError:
            return Result.fail("error", permission_message())
        except (ICMPLibError, OSError) as exc:
            return Result.fail("error", f"cannot open an ICMPv{self.family} socket: {exc}")
        opts = self.options
        try:
            start = loop.time()
            for i in range(opts.count):
                if i:
                    await asyncio.sleep(max(0.0, start + i * opts.interval - loop.time()))
                try:
                    sent.append(pinger.send(address, self.payload))
                except OSError as exc:
                    send_errors.append(exc.strerror or str(exc))
                    if os_error_reason(exc) != "unreachable":
                        raise
            pending = [e.future for e in sent if not e.future.done()]
            if pending and self.wait is None:
                await asyncio.wait(pending)  # until the last reply, or the scheduler's cut
            elif pending and self.wait is not None:
                last_deadline = min(deadline, sent[-1].sent_at_loop + self.wait)
                await asyncio.wait(pending, timeout=max(0.0, last_deadline - loop.time()))
        finally:
            for echo in sent:
                pinger.forget(echo)
        return self._result(sent, send_errors)

    def timed_out(self, timeout: float) -> Result:
        """The run was cut at its deadline: the replies that came back by then."""
        return self._result(self._sent, self._send_errors)

    def _result(self, sent: list[_Echo], send_errors: list[str]) -> Result:
        count = self.options.count
        rtts: list[float] = []
        errors: list[str] = list(send_errors)
        for echo in sent:
            if echo.future.done() and not echo.future.cancelled():
                kind, value = echo.future.result()
                if kind == "reply" and isinstance(value, float) and (
                        self.wait is None or value <= self.wait):
                    rtts.append(value)
                elif kind == "error":
                    errors.append(str(value))
        replies = len(rtts)
        loss = (count - replies) / count
        readings = [readings_catalogue.ICMP_LOSS.reading(loss)]
        if rtts:
            # avg and max only: with loss and the five common series a healthy icmp probe is
            # at 8 series (min stays in the message, "rtt min/avg/max").
            for stat, value in (("avg", sum(rtts) / replies), ("max", max(rtts))):
                readings.append(readings_catalogue.ICMP_RTT.reading(value, stat))
        summary = f"{replies}/{count} replies from {self.spec.target}"
        if rtts:
            summary += f", rtt min/avg/max {min(rtts) * 1000:.3f}/{sum(rtts) / replies * 1000:.3f}/" \
                       f"{max(rtts) * 1000:.3f} ms"
        limit = self.options.max_loss
        up = replies > 0 if limit is None else loss <= limit + 1e-9
        if up:
            return Result.ok(replies, summary, readings=readings)
        wanted = "at least one reply" if limit is None else f"loss at most {limit:.0%}"
        if errors:
            return Result.fail("unreachable", f"{summary} ({wanted}): {errors[0]}",
                               code=replies, readings=readings)
        within = (f"within {self.wait * 1000:.0f}ms each" if self.wait is not None
                  else f"within {format_duration(self.spec.timeout)}")
        return Result.fail("timeout", f"{summary} {within} ({wanted})",
                           code=replies, readings=readings)


def permission_message() -> str:
    groups = _read("/proc/sys/net/ipv4/ping_group_range") or "unknown"
    return (f"cannot open ICMP sockets: unprivileged ICMP is not allowed for group {os.getgid()} "
            f"(net.ipv4.ping_group_range = {groups}) and raw sockets need CAP_NET_RAW; fix one: "
            f"sysctl -w net.ipv4.ping_group_range=\"0 2147483647\", or grant CAP_NET_RAW "
            f"(systemd AmbientCapabilities=CAP_NET_RAW, Kubernetes capabilities add NET_RAW)")


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return " ".join(fh.read().split())
    except OSError:
        return ""


def open_socket(family: int) -> ICMPv4Socket | ICMPv6Socket:
    """An unprivileged datagram ICMP socket where allowed, else a raw one."""
    cls = ICMPv6Socket if family == 6 else ICMPv4Socket
    try:
        return cls(privileged=False)
    except SocketPermissionError:
        return cls(privileged=True)


@dataclass
class _Echo:
    sequence: int
    future: asyncio.Future[tuple[str, float | str]]
    sent_at: float  # wall clock, to compare with kernel receive timestamps
    sent_at_loop: float


class _Pinger:
    """One shared ICMP socket: sends echo requests and hands replies to waiting runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int) -> None:
        self.loop = loop
        self.family = family
        self.icmp = open_socket(family)
        self.sock: socket.socket = self.icmp.sock
        self.sock.setblocking(False)
        self.raw = self.icmp.is_privileged
        self.ident = random.randrange(1, 0xFFFF)
        self.sequence = random.randrange(0, 0x10000)
        self.waiting: dict[int, _Echo] = {}
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # Replies to many probes can land at once; the default buffer drops them.
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
        loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, address: str, payload: bytes) -> _Echo:
        for _ in range(0x10000):
            self.sequence = (self.sequence + 1) & 0xFFFF
            if self.sequence not in self.waiting:
                break
        request = ICMPRequest(address, self.ident, self.sequence, payload=payload)
        sent_at_loop = self.loop.time()
        try:
            self.icmp.send(request)
        except ICMPLibError as exc:
            cause = exc.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise OSError(str(exc)) from None
        if not self.raw:
            # the kernel put its own identifier on a datagram socket's requests
            self.ident = request.id
        echo = _Echo(self.sequence, self.loop.create_future(), request.time, sent_at_loop)
        self.waiting[self.sequence] = echo
        return echo

    def forget(self, echo: _Echo) -> None:
        if self.waiting.get(echo.sequence) is echo:
            del self.waiting[echo.sequence]

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.icmp.close()
        for echo in self.waiting.values():
            if not echo.future.done():
                echo.future.cancel()
        self.waiting.clear()

    def _readable(self) -> None:
        for _ in range(1024):  # bounded: let other callbacks run under a flood
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            received = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    received = sec + nsec / 1e9
            self._dispatch(data, received)

    def _dispatch(self, data: bytes, received: float) -> None:
        if self.family == 4 and self.raw:
            if len(data) < 20:
                return
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 8:
            return
        kind = data[0]
        reply, errors = (129, (1, 3)) if self.family == 6 else (0, (3, 11))
        if kind == reply:
            ident, sequence = struct.unpack("!HH", data[4:8])
            outcome: tuple[str, float | str] = ("reply", 0.0)
        elif kind in errors and self.raw:
            inner = data[8:]
            if self.family == 4:
                if len(inner) < 20:
                    return
                inner = inner[(inner[0] & 0x0F) * 4:]
            else:
                inner = inner[40:]
            if len(inner) < 8:
                return
            ident, sequence = struct.unpack("!HH", inner[4:8])
            outcome = ("error", _describe_error(self.family, kind, data[1]))
        else:
            return
        if self.raw and ident != self.ident:
            return
        echo = self.waiting.get(sequence)
        if echo is None or echo.future.done():
            return
        if outcome[0] == "reply":
            outcome = ("reply", max(0.0, received - echo.sent_at))
        echo.future.set_result(outcome)


def _describe_error(family: int, kind: int, code: int) -> str:
    if (family, kind) in ((4, 11), (6, 3)):
        return "time to live exceeded in transit"
    if family == 4:
        names = {0: "network", 1: "host", 3: "port", 9: "network", 10: "host", 13: "host"}
    else:
        names = {0: "network", 1: "host", 3: "host", 4: "port"}
    return f"destination {names.get(code, 'host')} unreachable (ICMP type {kind} code {code})"


_PINGERS: dict[tuple[int, int], _Pinger] = {}


def pinger_for(loop: asyncio.AbstractEventLoop, family: int) -> _Pinger:
    """The shared socket of this event loop for ``family``, opened on first use."""
    for key, pinger in list(_PINGERS.items()):
        if pinger.loop.is_closed():
            pinger.close()
            del _PINGERS[key]
    key = (id(loop), family)
    found = _PINGERS.get(key)
    if found is None or found.loop is not loop:
        found = _PINGERS[key] = _Pinger(loop, family)
    return found
