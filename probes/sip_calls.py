"""SIP INVITEs on the pjsua2 worker: place calls, follow their state, hang up, and wait for room.

A call succeeds once it reaches the request's ``success_state`` and is hung up
then; a call that ends first settles with what the peer said.  Calls wait in a
queue while pjsua's call table is full (its size learned from the first
refusal) or while pjlib's ioqueue might run out of socket slots
(``CALL_SOCKET_BUDGET``).  Runs on the worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import Any

import pjsua2 as pj

from .sip_handle import Handle, exc_text, origin, settle
from .sip_request import SipOutcome

log = logging.getLogger("probewatch.sip")

STATES = {
    "CALLING": pj.PJSIP_INV_STATE_CALLING,
    "EARLY": pj.PJSIP_INV_STATE_EARLY,
    "CONNECTING": pj.PJSIP_INV_STATE_CONNECTING,
    "CONFIRMED": pj.PJSIP_INV_STATE_CONFIRMED,
}
STATE_NAMES = {v: k for k, v in STATES.items()}
# pjsua's compiled-in PJSUA_MAX_CALLS (32 by default, 4 in the pjsua2-python wheel: learned
# at run time).
MAX_CALLS = 32
PJ_ETOOMANY = 70010
RETRY_CALL_SECONDS = 0.02
SLOT_RELEASE_SECONDS = 5.0
HANGUP_GRACE = 0.3
# pjlib's ioqueue has a fixed number of socket slots (64 in the wheel's select build), and a
# closed socket's slot comes back only PJ_IOQUEUE_KEY_FREE_DELAY (500 ms) later; a full
# ioqueue is an assertion that aborts the process, not an error.  Each call opens two media
# sockets (RTP, RTCP), so calls that end at once (a 486, a 503) could exhaust it: a call
# counts against this budget from its INVITE until KEY_FREE_SECONDS after it ended.
CALL_SOCKET_BUDGET = 16
KEY_FREE_SECONDS = 1.0


class _ProbeCall(pj.Call):
    def __init__(self, account: Any, owner: Calls, ident: int) -> None:
        super().__init__(account)
        self._owner = owner
        self.ident = ident

    def onCallState(self, prm: Any) -> None:  # pjsua2's name
        try:
            self._owner.call_state(self, prm.e)
        except Exception:  # an exception must not cross into C++
            log.exception("handling a call state failed")


class Calls:
    """The calls placed (``placed``, by request id) and those waiting for room (``waiting``)."""

    def __init__(self) -> None:
        self.placed: dict[int, tuple[Handle, Any]] = {}
        self.waiting: deque[Handle] = deque()
        self._limit = MAX_CALLS
        self._limit_learned = False
        self._retry_at = 0.0
        self._last_end = 0.0
        self._ends: deque[float] = deque()  # when placed calls ended, for CALL_SOCKET_BUDGET
        self._hangups: list[int] = []
        self._released: list[Any] = []

    def begin(self, pending: Handle) -> None:
        if len(self.placed) >= self._limit or not self._socket_room():
            self.waiting.append(pending)
        else:
            self._place(pending)

    def _place(self, pending: Handle) -> None:
        assert pending.account is not None
        call = _ProbeCall(pending.account.obj, self, pending.ident)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        self.placed[pending.ident] = (pending, call)
        pending.account.calls.add(pending.ident)
        try:
            call.makeCall(pending.request.uri, prm)
        except pj.Error as exc:
            self._forget(pending.ident, placed=False)
            ending = time.monotonic() - self._last_end < SLOT_RELEASE_SECONDS
            if exc.status == PJ_ETOOMANY and (self.placed or ending):
                # pjsua's call table is full: wait for a free slot.  The first time, its
                # size is what we hold; a slot frees only once its call's last transaction
                # (the BYE or CANCEL) ends, so later refusals mean "try again shortly".
                if not self._limit_learned:
                    self._limit_learned = True
                    self._limit = len(self.placed)
                    log.info("pjsua places this many calls at once; further INVITEs wait",
                             extra={"calls": self._limit})
                self.waiting.appendleft(pending)
                self._retry_at = time.monotonic() + RETRY_CALL_SECONDS
                return
            pending.account = None
            settle(pending, SipOutcome(-1, exc_text(exc), "local"))

    def _socket_room(self) -> bool:
        """Whether another call's media sockets fit pjlib's ioqueue (see CALL_SOCKET_BUDGET)."""
        freed_before = time.monotonic() - KEY_FREE_SECONDS
        while self._ends and self._ends[0] < freed_before:
            self._ends.popleft()
        return len(self.placed) + len(self._ends) < CALL_SOCKET_BUDGET

    def call_state(self, call: Any, event: Any) -> None:
        """A call's state changed (pjsua2's ``Call.onCallState``)."""
        entry = self.placed.get(call.ident)
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
                came_from = "peer"
                if event.type == pj.PJSIP_EVENT_TSX_STATE:
                    came_from = origin(event.body.tsxState.type)
                elif event.type == pj.PJSIP_EVENT_TIMER:
                    came_from = "timer"
                settle(pending, SipOutcome(
                    code, str(info.lastReason), came_from, state=pending.state,
                    credentials_sent=pending.request.credentials is not None))
            self._forget(call.ident)
        elif not pending.settled and state >= STATES[pending.request.success_state]:
            settle(pending, SipOutcome(code, str(info.lastReason), "peer", succeeded=True,
                                       state=pending.state))
            self._hangups.append(call.ident)

    def _forget(self, ident: int, placed: bool = True) -> None:
        entry = self.placed.pop(ident, None)
        if entry is None:
            return
        pending, call = entry
        if placed:
            self._last_end = time.monotonic()
            self._ends.append(self._last_end)
        if pending.account is not None:
            pending.account.calls.discard(ident)
            if placed:  # a call that could not be placed may be placed again
                pending.account = None
        self._released.append(call)  # released after the callback that told us returns

    def abort(self, ident: int) -> None:
        """The probe gave up on ``ident``: drop it from the queue, or hang up its call."""
        for i, queued in enumerate(self.waiting):
            if queued.ident == ident:
                del self.waiting[i]
                queued.account = None
                return
        entry = self.placed.get(ident)
        if entry is not None:
            entry[0].settled = True
            self._hangups.append(ident)

    def after_events(self) -> None:
        """After each poll: hang up what is due, release ended calls, place waiting ones."""
        for ident in self._hangups:
            entry = self.placed.get(ident)
            if entry is not None:
                with contextlib.suppress(pj.Error):
                    entry[1].hangup(pj.CallOpParam())
        self._hangups.clear()
        self._released.clear()
        while (self.waiting and len(self.placed) < self._limit
               and time.monotonic() >= self._retry_at and self._socket_room()):
            self._place(self.waiting.popleft())

    def hang_up_all(self, ep: Any) -> None:
        """Stopping: hang up every call, give them HANGUP_GRACE to end, then forget them all."""
        if self.placed:
            with contextlib.suppress(pj.Error):
                ep.hangupAllCalls()
            deadline = time.monotonic() + HANGUP_GRACE
            while self.placed and time.monotonic() < deadline:
                ep.libHandleEvents(10)
        self.placed.clear()
        self._hangups.clear()
        self._released.clear()
