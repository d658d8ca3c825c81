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

The OPTIONS and INVITE sides are probes/sip_options.py and probes/sip_calls.py;
the accounts and transports they use, probes/sip_accounts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import socket
import sys
import threading
import time
from typing import Any

import pjsua2 as pj

from .sip_accounts import SipAccounts
from .sip_calls import MAX_CALLS, Calls
from .sip_handle import Handle, SipSetupError, exc_text, settle
from .sip_log import PjsipLogWriter, stdout_into_log
from .sip_options import OptionsRequests
from .sip_request import SipOutcome, SipRequest

log = logging.getLogger("probewatch.sip")

IDLE_SECONDS = 60.0
POLL_MS = 100


class SipUnavailable(Exception):
    """The endpoint could not be started."""


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
        self._accounts = SipAccounts(self._options_done)
        self._options = OptionsRequests(self._accounts)
        self._calls = Calls()
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
        self._ep = self._accounts.ep = ep
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
                    settle(job[1], SipOutcome(-1, f"{type(exc).__name__}: {exc}", "local"))
        return False

    def _begin(self, pending: Handle) -> None:
        request = pending.request
        try:
            account = self._accounts.account(request)
        except SipSetupError as exc:
            settle(pending, SipOutcome(-1, str(exc), "local"))
            return
        pending.account = account
        account.last_used = time.monotonic()
        if request.method == "OPTIONS":
            self._options.send(pending)
        else:
            self._calls.begin(pending)

    def _options_done(self, event: Any) -> None:
        self._options.done(event)

    def _abort(self, ident: int) -> None:
        if not self._options.abort(ident):
            self._calls.abort(ident)

    def _after_events(self) -> None:
        self._calls.after_events()
        now = time.monotonic()
        if now - self._last_sweep > 1.0:
            self._last_sweep = now
            self._accounts.sweep(now - IDLE_SECONDS)

    def _teardown(self) -> None:
        self.stopped = True
        stopping = SipOutcome(-1, self.failure or "the exporter is stopping", "stopping")
        handles = [*self._options.open.values(), *(p for p, _ in self._calls.placed.values()),
                   *self._calls.waiting, *(job[1] for job in _drain(self._jobs) if job[0] == "start")]
        for pending in handles:
            settle(pending, stopping)
            pending.account = None  # only the worker's tables hold accounts from here on
        self._calls.waiting.clear()
        ep = self._ep
        if ep is None:
            return
        try:
            self._calls.hang_up_all(ep)
            kept = self._accounts.release()  # ended by libDestroy; see the module docstring
            ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
            self._options.open.clear()
            kept.clear()
        except Exception:  # stopping must finish
            log.exception("destroying the pjsua2 endpoint failed")
        finally:
            self._ep = self._accounts.ep = None
            del ep
            if self._wake_sock is not None:
                self._wake_sock.close()


def _drain(jobs: queue.SimpleQueue[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    while True:
        try:
            out.append(jobs.get_nowait())
        except queue.Empty:
            return out
