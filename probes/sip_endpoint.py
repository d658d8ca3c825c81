"""The process's one pjsua2 endpoint, owned and driven by one worker thread.

pjsua2 allows one library instance per process, called from the thread that
created it.  ``SipEndpoint`` starts that thread on first use; probes queue
requests into it and get the outcome back on their own event loop as a future.
A loopback "wake" transport lets a queued request interrupt the worker's poll
at once, so queueing adds no latency (a bare CRLF keep-alive is ignored by
pjsip without a log line).

Every pjsua2 object (Account, Call, the log writer) is created and released on
the worker thread only, and Calls and idle Accounts are released before
``libDestroy``: released in another thread or after the library, they abort
the interpreter.  An Account with an OPTIONS transaction still open is the one
exception: pjsua reports that transaction to the Account when it ends, so such
Accounts live through ``libDestroy`` (which ends the transaction) and are
released right after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from .sip_digest import digest_answer
from .sip_log import PjsipLogWriter, stdout_into_log
from .sip_request import SipOutcome, SipRequest

log = logging.getLogger("probewatch.sip")

STATES = {
    "CALLING": pj.PJSIP_INV_STATE_CALLING,
    "EARLY": pj.PJSIP_INV_STATE_EARLY,
    "CONNECTING": pj.PJSIP_INV_STATE_CONNECTING,
    "CONFIRMED": pj.PJSIP_INV_STATE_CONFIRMED,
}
STATE_NAMES = {v: k for k, v in STATES.items()}
TRANSPORT_TYPES = {
    ("udp", 4): pj.PJSIP_TRANSPORT_UDP, ("tcp", 4): pj.PJSIP_TRANSPORT_TCP,
    ("tls", 4): pj.PJSIP_TRANSPORT_TLS, ("udp", 6): pj.PJSIP_TRANSPORT_UDP6,
    ("tcp", 6): pj.PJSIP_TRANSPORT_TCP6, ("tls", 6): pj.PJSIP_TRANSPORT_TLS6,
}# tls.min_version: the protocol versions pjsip may speak.
TLS_PROTOCOLS = {"1.2": pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3,
                 "1.3": pj.PJ_SSL_SOCK_PROTO_TLS1_3}

REQUEST_HEADER = "X-Probewatch-Request"
# pjsua's compiled-in limits: 8 transports (one is the wake transport), 8 accounts, and
# PJSUA_MAX_CALLS calls (32 by default, 4 in the pjsua2-python wheel: learned at run time).
MAX_TRANSPORTS = 7
MAX_ACCOUNTS = 8
MAX_CALLS = 32
PJ_ETOOMANY = 70010
RETRY_CALL_SECONDS = 0.02
SLOT_RELEASE_SECONDS = 5.0
IDLE_SECONDS = 60.0
POLL_MS = 100
HANGUP_GRACE = 0.3
# pjlib's ioqueue has a fixed number of socket slots (64 in the wheel's select build), and a
# closed socket's slot comes back only PJ_IOQUEUE_KEY_FREE_DELAY (500 ms) later; a full
# ioqueue is an assertion that aborts the process, not an error.  Each call opens two media
# sockets (RTP, RTCP), so calls that end at once (a 486, a 503) could exhaust it: a call
# counts against this budget from its INVITE until KEY_FREE_SECONDS after it ended.
CALL_SOCKET_BUDGET = 16
KEY_FREE_SECONDS = 1.0
_HEADER_RE = re.compile(rf"^{REQUEST_HEADER}:\s*(\d+)", re.IGNORECASE | re.MULTILINE)


class SipUnavailable(Exception):
    """The endpoint could not be started."""


@dataclass
class Handle:
    """One queued request.  The worker sets ``state`` (INVITE) and settles ``future``.

    ``account`` is the worker's, set while the request is in flight and cleared when
    it ends: the probe holds the Handle, and a pjsua2 object whose last reference
    goes away in the probe's thread would be destroyed there, aborting pjlib.
    """

    ident: int
    request: SipRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[SipOutcome]
    account: _Account | None = None
    attempt: int = 1
    state: str = ""
    settled: bool = False


@dataclass
class _Account:
    key: tuple[Any, ...]
    transport: tuple[Any, ...]
    obj: Any
    in_flight: set[int] = field(default_factory=set)  # OPTIONS transactions still open
    calls: set[int] = field(default_factory=set)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.calls


class _ProbeAccount(pj.Account):
    def __init__(self, owner: SipEndpoint) -> None:
        super().__init__()
        self._owner = owner

    def onSendRequest(self, prm: Any) -> None:  # pjsua2's name
        try:
            self._owner._options_done(prm.e)
        except Exception:  # an exception must not cross into C++
            log.exception("handling an OPTIONS response failed")


class _ProbeCall(pj.Call):
    def __init__(self, account: Any, owner: SipEndpoint, ident: int) -> None:
        super().__init__(account)
        self._owner = owner
        self.ident = ident

    def onCallState(self, prm: Any) -> None:  # pjsua2's name
        try:
            self._owner._call_state(self, prm.e)
        except Exception:  # an exception must not cross into C++
            log.exception("handling a call state failed")


class SipEndpoint:
    def __init__(self, log_level: int = 3) -> None:
        self.log_level = log_level
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._start_error = ""
        self._thread: threading.Thread | None = None
        self._wake_to: tuple[str, int] | None = None
        self._wake_sock: socket.socket | None = None
        self._wake_sent = False
        self._idents = itertools.count(1)
        self.stopped = False
        self.failure = ""  # why the worker died; pjsua2 cannot be started again then
        # worker-thread state
        self._ep: Any = None
        self._transports: dict[tuple[Any, ...], int] = {}
        self._transport_used: dict[tuple[Any, ...], float] = {}
        self._accounts: dict[tuple[Any, ...], _Account] = {}
        self._options: dict[int, Handle] = {}
        self._calls: dict[int, tuple[Handle, Any]] = {}
        self._call_queue: deque[Handle] = deque()
        self._call_limit = MAX_CALLS
        self._limit_learned = False
        self._calls_retry_at = 0.0
        self._last_call_end = 0.0
        self._call_ends: deque[float] = deque()  # when placed calls ended, for CALL_SOCKET_BUDGET
        self._hangups: list[int] = []
        self._released: list[Any] = []
        self._last_sweep = 0.0

    # -- any thread ------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._main, name="pjsua2", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SipUnavailable("the pjsua2 endpoint did not start in time")
        if self._start_error:
            raise SipUnavailable(self._start_error)

    def submit(self, request: SipRequest) -> Handle:
        """Queue ``request``; its outcome arrives on the calling event loop as ``.future``."""
        loop = asyncio.get_running_loop()
        handle = Handle(next(self._idents), request, loop, loop.create_future())
        if self.stopped:
            handle.future.set_result(SipOutcome(-1, "the exporter is stopping", "stopping"))
        else:
            self._post(("start", handle))
        return handle

    def abort(self, ident: int) -> None:
        """The probe gave up on ``ident``: hang up its call, forget its request."""
        self._post(("abort", ident))

    def stop(self, timeout: float = 1.8) -> bool:
        """Release everything and destroy the library; True when done in time."""
        if self._thread is None or not self._thread.is_alive():
            return True
        self._post(("stop",))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _post(self, job: tuple[Any, ...]) -> None:
        self._jobs.put(job)
        if not self._wake_sent and self._wake_sock is not None and self._wake_to is not None:
            self._wake_sent = True
            with contextlib.suppress(OSError):
                self._wake_sock.sendto(b"\r\n\r\n", self._wake_to)

    # -- worker thread -----------------------------------------------------------
    def _main(self) -> None:
        try:
            self._create()
        except Exception as exc:  # reported to whoever starts us
            self._start_error = f"cannot start the pjsua2 endpoint: {exc_text(exc)}"
            self._ready.set()
            return
        self._ready.set()
        poll = POLL_MS if self._wake_to is not None else 5
        try:
            while True:
                self._wake_sent = False
                if self._run_jobs():
                    break
                self._ep.libHandleEvents(poll)
                try:
                    self._after_events()
                except Exception:  # one bad request must not stop every sip probe
                    log.exception("SIP worker housekeeping failed")
        except Exception as exc:  # keep the teardown below
            self.failure = f"the SIP worker failed: {type(exc).__name__}: {exc}"
            log.exception("the SIP worker failed")
        self._teardown()

    def _create(self) -> None:
        ep = pj.Endpoint()
        sys.stdout.flush()
        # libCreate prints its first lines before a log writer can be installed
        with stdout_into_log():
            ep.libCreate()
        self._ep = ep
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.userAgent = "probewatch"
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.noVad = True
        writer = PjsipLogWriter()
        writer.__disown__()  # the Endpoint deletes its writer when it is destroyed
        cfg.logConfig.writer = writer
        cfg.logConfig.level = self.log_level
        cfg.logConfig.consoleLevel = self.log_level
        cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER | pj.PJ_LOG_HAS_SPACE
        ep.libInit(cfg)
        ep.audDevManager().setNoDev()
        try:
            tc = pj.TransportConfig()
            tc.port = 0
            tc.boundAddress = tc.publicAddress = "127.0.0.1"
            info = ep.transportGetInfo(ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc))
            host, _, port = info.localName.rpartition(":")
            self._wake_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._wake_sock.setblocking(False)
            self._wake_to = (host, int(port))
        except (pj.Error, OSError, ValueError) as exc:
            log.warning("no loopback wake transport; polling instead", extra={"error": exc_text(exc)})
        ep.libStart()

    def _run_jobs(self) -> bool:
        for _ in range(10000):
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return False
            if job[0] == "stop":
                return True
            try:
                if job[0] == "start":
                    self._begin(job[1])
                elif job[0] == "abort":
                    self._abort(job[1])
            except Exception as exc:  # one bad request must not stop every sip probe
                log.exception("a SIP request failed in the worker")
                if job[0] == "start":
                    self._settle(job[1], SipOutcome(-1, f"{type(exc).__name__}: {exc}", "local"))
        return False

    def _begin(self, pending: Handle) -> None:
        request = pending.request
        try:
            account = self._account(request)
        except SipSetupError as exc:
            self._settle(pending, SipOutcome(-1, str(exc), "local"))
            return
        pending.account = account
        account.last_used = time.monotonic()
        if request.method == "OPTIONS":
            self._send_options(pending, None)
        elif len(self._calls) >= self._call_limit or not self._socket_room():
            self._call_queue.append(pending)
        else:
            self._place_call(pending)

    # OPTIONS -------------------------------------------------------------------
    def _send_options(self, pending: Handle, authorization: tuple[str, str] | None) -> None:
        assert pending.account is not None
        prm = pj.SendRequestParam()
        prm.method = "OPTIONS"
        prm.txOption.targetUri = pending.request.uri
        for name, value in ((REQUEST_HEADER, str(pending.ident)),
                            *((authorization,) if authorization else ())):
            header = pj.SipHeader()
            header.hName, header.hValue = name, value
            prm.txOption.headers.append(header)
        try:
            pending.account.obj.sendRequest(prm)
        except pj.Error as exc:
            pending.account = None
            self._settle(pending, SipOutcome(-1, exc_text(exc), "local"))
            return
        self._options[pending.ident] = pending
        pending.account.in_flight.add(pending.ident)

    def _options_done(self, event: Any) -> None:
        tsx_event = event.body.tsxState
        tsx = tsx_event.tsx
        match = _HEADER_RE.search(tsx.lastTx.wholeMsg or "")
        if match is None:
            return
        ident = int(match.group(1))
        pending = self._options.pop(ident, None)
        if pending is None:
            for known in self._accounts.values():
                known.in_flight.discard(ident)
            return
        account = pending.account
        pending.account = None  # see Handle: the probe's side must not hold pjsua2 objects
        if account is not None:
            account.in_flight.discard(ident)
        if pending.settled or account is None:  # the probe gave up on it, or we are stopping
            return
        code, text = int(tsx.statusCode), str(tsx.statusText)
        origin = _origin(tsx_event.type)
        creds = pending.request.credentials
        if origin == "peer" and code in (401, 407) and creds is not None and pending.attempt == 1:
            answer = digest_answer(tsx_event.src.rdata.wholeMsg, code, "OPTIONS",
                                   _request_uri(tsx.lastTx.wholeMsg), creds)
            if isinstance(answer, str):
                pending.attempt = 2
                pending.account = account
                header = "Authorization" if code == 401 else "Proxy-Authorization"
                self._send_options(pending, (header, answer))
                return
            self._settle(pending, SipOutcome(code, answer.problem, "peer", credentials_sent=False))
            return
        self._settle(pending, SipOutcome(code, text, origin, succeeded=200 <= code < 300,
                                         credentials_sent=pending.attempt > 1))

    # INVITE ----------------------------------------------------------------------
    def _place_call(self, pending: Handle) -> None:
        assert pending.account is not None
        call = _ProbeCall(pending.account.obj, self, pending.ident)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        self._calls[pending.ident] = (pending, call)
        pending.account.calls.add(pending.ident)
        try:
            call.makeCall(pending.request.uri, prm)
        except pj.Error as exc:
            self._forget_call(pending.ident, placed=False)
            ending = time.monotonic() - self._last_call_end < SLOT_RELEASE_SECONDS
            if exc.status == PJ_ETOOMANY and (self._calls or ending):
                # pjsua's call table is full: wait for a free slot.  The first time, its
                # size is what we hold; a slot frees only once its call's last transaction
                # (the BYE or CANCEL) ends, so later refusals mean "try again shortly".
                if not self._limit_learned:
                    self._limit_learned = True
                    self._call_limit = len(self._calls)
                    log.info("pjsua places this many calls at once; further INVITEs wait",
                             extra={"calls": self._call_limit})
                self._call_queue.appendleft(pending)
                self._calls_retry_at = time.monotonic() + RETRY_CALL_SECONDS
                return
            pending.account = None
            self._settle(pending, SipOutcome(-1, exc_text(exc), "local"))

    def _socket_room(self) -> bool:
        """Whether another call's media sockets fit pjlib's ioqueue (see CALL_SOCKET_BUDGET)."""
        freed_before = time.monotonic() - KEY_FREE_SECONDS
        while self._call_ends and self._call_ends[0] < freed_before:
            self._call_ends.popleft()
        return len(self._calls) + len(self._call_ends) < CALL_SOCKET_BUDGET

    def _call_state(self, call: Any, event: Any) -> None:
        entry = self._calls.get(call.ident)
        if entry is None:
            return
        pending = entry[0]
        info = call.getInfo()
        state = int(info.state)
        if state in STATE_NAMES:
            pending.state = STATE_NAMES[state]
        code = int(info.lastStatusCode) or -1
        if state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if not pending.settled:
                origin = "peer"
                if event.type == pj.PJSIP_EVENT_TSX_STATE:
                    origin = _origin(event.body.tsxState.type)
                elif event.type == pj.PJSIP_EVENT_TIMER:
                    origin = "timer"
                self._settle(pending, SipOutcome(
                    code, str(info.lastReason), origin, state=pending.state,
                    credentials_sent=pending.request.credentials is not None))
            self._forget_call(call.ident)
        elif not pending.settled and state >= STATES[pending.request.success_state]:
            self._settle(pending, SipOutcome(code, str(info.lastReason), "peer", succeeded=True,
                                             state=pending.state))
            self._hangups.append(call.ident)

    def _forget_call(self, ident: int, placed: bool = True) -> None:
        entry = self._calls.pop(ident, None)
        if entry is None:
            return
        pending, call = entry
        if placed:
            self._last_call_end = time.monotonic()
            self._call_ends.append(self._last_call_end)
        if pending.account is not None:
            pending.account.calls.discard(ident)
            if placed:  # a call that could not be placed may be placed again
                pending.account = None
        self._released.append(call)  # released after the callback that told us returns

    def _abort(self, ident: int) -> None:
        pending = self._options.get(ident)
        if pending is not None:
            pending.settled = True  # the transaction runs on; its answer is dropped
            return
        for i, queued in enumerate(self._call_queue):
            if queued.ident == ident:
                del self._call_queue[i]
                queued.account = None
                return
        entry = self._calls.get(ident)
        if entry is not None:
            entry[0].settled = True
            self._hangups.append(ident)

    def _after_events(self) -> None:
        for ident in self._hangups:
            entry = self._calls.get(ident)
            if entry is not None:
                with contextlib.suppress(pj.Error):
                    entry[1].hangup(pj.CallOpParam())
        self._hangups.clear()
        self._released.clear()
        while (self._call_queue and len(self._calls) < self._call_limit
               and time.monotonic() >= self._calls_retry_at and self._socket_room()):
            self._place_call(self._call_queue.popleft())
        now = time.monotonic()
        if now - self._last_sweep > 1.0:
            self._last_sweep = now
            self._sweep(now - IDLE_SECONDS)

    # accounts and transports -------------------------------------------------
    def _account(self, request: SipRequest) -> _Account:
        tkey = (request.transport, request.family, request.local_ip, request.local_port,
                request.ca_file, request.verify_server, request.cert_file, request.key_file,
                request.min_version)
        creds = request.credentials if request.method == "INVITE" else None
        key = (tkey, creds)
        account = self._accounts.get(key)
        if account is not None:
            return account
        if len(self._accounts) >= MAX_ACCOUNTS:
            self._sweep(time.monotonic())  # make room: release every idle account
            if len(self._accounts) >= MAX_ACCOUNTS:
                raise SipSetupError(
                    f"more than {MAX_ACCOUNTS} distinct transport and credential combinations"
                    " are busy at once (pjsua's limit)")
        tid = self._transport(tkey)
        cfg = pj.AccountConfig()
        host = f"[{request.local_ip}]" if request.family == 6 else request.local_ip
        cfg.idUri = f"sip:probewatch@{host}"
        cfg.sipConfig.transportId = tid
        # The wheel's pjsua is built without PJ_HAS_IPV6: it asserts (aborting the process)
        # unless both stay disabled.  The bound transport still carries SIP over IPv6.
        cfg.sipConfig.ipv6Use = pj.PJSUA_IPV6_DISABLED
        media = cfg.mediaConfig
        media.transportConfig.port = 0
        media.transportConfig.boundAddress = request.local_ip
        media.transportConfig.publicAddress = request.local_ip
        media.ipv6Use = pj.PJSUA_IPV6_DISABLED
        nat = cfg.natConfig
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.iceEnabled = False
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        if creds is not None:
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", creds.realm or "*", creds.username, 0, creds.password))
        obj = _ProbeAccount(self)
        try:
            obj.create(cfg)
        except pj.Error as exc:
            raise SipSetupError(f"cannot set up the SIP account: {exc_text(exc)}") from None
        account = self._accounts[key] = _Account(key, tkey, obj)
        return account

    def _transport(self, tkey: tuple[Any, ...]) -> int:
        self._transport_used[tkey] = time.monotonic()
        if tkey in self._transports:
            return self._transports[tkey]
        kind, family, local_ip, local_port, ca_file, verify, cert_file, key_file, min_version = tkey
        if len(self._transports) >= MAX_TRANSPORTS:
            raise SipSetupError(f"more than {MAX_TRANSPORTS} distinct SIP transports"
                                " (transport, local address, local_port) are busy at once")
        tc = pj.TransportConfig()
        tc.port = local_port
        tc.boundAddress = tc.publicAddress = local_ip
        if kind == "tls":
            # The tls block of probes/tls.py, as pjsip takes it.
            tc.tlsConfig.CaListFile = ca_file
            tc.tlsConfig.verifyServer = verify
            if cert_file:
                tc.tlsConfig.certFile = cert_file
                tc.tlsConfig.privKeyFile = key_file or cert_file
            if min_version:
                tc.tlsConfig.proto = TLS_PROTOCOLS[min_version]
        try:
            tid = int(self._ep.transportCreate(TRANSPORT_TYPES[(kind, family)], tc))
        except pj.Error as exc:
            where = f"{local_ip}:{local_port}" if local_port else local_ip
            raise SipSetupError(f"cannot open a SIP {kind} transport on {where}: "
                                f"{exc_text(exc)}") from None
        self._transports[tkey] = tid
        return tid

    def _sweep(self, idle_before: float) -> None:
        """Release accounts idle since ``idle_before``, then transports no account uses."""
        for key, account in list(self._accounts.items()):
            if account.idle and account.last_used <= idle_before:
                del self._accounts[key]  # the last reference: pjsua deletes the account now
        in_use = {a.transport for a in self._accounts.values()}
        for tkey, tid in list(self._transports.items()):
            if tkey not in in_use and self._transport_used.get(tkey, 0) <= idle_before:
                with contextlib.suppress(pj.Error):
                    self._ep.transportClose(tid)
                del self._transports[tkey]
                self._transport_used.pop(tkey, None)

    # settling and stopping -------------------------------------------------------
    def _settle(self, pending: Handle, outcome: SipOutcome) -> None:
        if pending.settled:
            return
        pending.settled = True
        if not outcome.state:
            outcome.state = pending.state
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            pending.loop.call_soon_threadsafe(_resolve, pending.future, outcome)

    def _teardown(self) -> None:
        self.stopped = True
        stopping = SipOutcome(-1, self.failure or "the exporter is stopping", "stopping")
        handles = [*self._options.values(), *(p for p, _ in self._calls.values()),
                   *self._call_queue, *(job[1] for job in _drain(self._jobs) if job[0] == "start")]
        for pending in handles:
            self._settle(pending, stopping)
            pending.account = None  # only the worker's tables hold accounts from here on
        self._call_queue.clear()
        ep = self._ep
        if ep is None:
            return
        try:
            if self._calls:
                with contextlib.suppress(pj.Error):
                    ep.hangupAllCalls()
                deadline = time.monotonic() + HANGUP_GRACE
                while self._calls and time.monotonic() < deadline:
                    ep.libHandleEvents(10)
            self._calls.clear()
            self._hangups.clear()
            self._released.clear()
            kept = []
            for account in self._accounts.values():
                if account.in_flight:
                    kept.append(account.obj)  # ended by libDestroy; see the module docstring
            self._accounts.clear()
            ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
            self._options.clear()
            kept.clear()
        except Exception:  # stopping must finish
            log.exception("destroying the pjsua2 endpoint failed")
        finally:
            self._ep = None
            del ep
            if self._wake_sock is not None:
                self._wake_sock.close()


class SipSetupError(Exception):
    """A request could not be set up (transport, account)."""


def _resolve(future: asyncio.Future[SipOutcome], outcome: SipOutcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _drain(jobs: queue.SimpleQueue[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    while True:
        try:
            out.append(jobs.get_nowait())
        except queue.Empty:
            return out


def _origin(event_type: int) -> str:
    if event_type == pj.PJSIP_EVENT_RX_MSG:
        return "peer"
    if event_type == pj.PJSIP_EVENT_TRANSPORT_ERROR:
        return "transport"
    if event_type == pj.PJSIP_EVENT_TIMER:
        return "timer"
    return "local"


def exc_text(exc: BaseException) -> str:
    if isinstance(exc, pj.Error):
        return str(exc.reason) or str(exc.title)
    return str(exc) or type(exc).__name__


def _request_uri(message: str) -> str:
    first = message.split("\r\n", 1)[0].split("\n", 1)[0]
    parts = first.split(" ")
    return parts[1] if len(parts) >= 3 else ""
