"""SIP OPTIONS on the pjsua2 worker: send, match the answer to its request, answer a digest challenge once.

pjsua2 reports an OPTIONS transaction's end to the Account that sent it, not to
the request, so each request carries its id in ``REQUEST_HEADER`` and the
answer is matched back by it.  A 401 or 407 from the peer, with credentials
configured, is answered once with the Authorization computed by
probes/sip_digest.py.  Runs on the worker thread.
"""

from __future__ import annotations

import re
from typing import Any

import pjsua2 as pj

from .sip_accounts import SipAccounts
from .sip_digest import digest_answer
from .sip_handle import Handle, exc_text, origin, settle
from .sip_request import SipOutcome

REQUEST_HEADER = "X-Probewatch-Request"
_HEADER_RE = re.compile(rf"^{REQUEST_HEADER}:\s*(\d+)", re.IGNORECASE | re.MULTILINE)


class OptionsRequests:
    """The OPTIONS transactions open, by request id."""

    def __init__(self, accounts: SipAccounts) -> None:
        self.accounts = accounts
        self.open: dict[int, Handle] = {}

    def send(self, pending: Handle, authorization: tuple[str, str] | None = None) -> None:
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
            settle(pending, SipOutcome(-1, exc_text(exc), "local"))
            return
        self.open[pending.ident] = pending
        pending.account.in_flight.add(pending.ident)

    def done(self, event: Any) -> None:
        """An OPTIONS transaction ended (pjsua2's ``Account.onSendRequest``)."""
        tsx_event = event.body.tsxState
        tsx = tsx_event.tsx
        match = _HEADER_RE.search(tsx.lastTx.wholeMsg or "")
        if match is None:
            return
        ident = int(match.group(1))
        pending = self.open.pop(ident, None)
        if pending is None:
            self.accounts.forget_in_flight(ident)
            return
        account = pending.account
        pending.account = None  # see Handle: the probe's side must not hold pjsua2 objects
        if account is not None:
            account.in_flight.discard(ident)
        if pending.settled or account is None:  # the probe gave up on it, or we are stopping
            return
        code, text = int(tsx.statusCode), str(tsx.statusText)
        came_from = origin(tsx_event.type)
        creds = pending.request.credentials
        if came_from == "peer" and code in (401, 407) and creds is not None and pending.attempt == 1:
            answer = digest_answer(tsx_event.src.rdata.wholeMsg, code, "OPTIONS",
                                   _request_uri(tsx.lastTx.wholeMsg), creds)
            if isinstance(answer, str):
                pending.attempt = 2
                pending.account = account
                header = "Authorization" if code == 401 else "Proxy-Authorization"
                self.send(pending, (header, answer))
                return
            settle(pending, SipOutcome(code, answer.problem, "peer", credentials_sent=False))
            return
        settle(pending, SipOutcome(code, text, came_from, succeeded=200 <= code < 300,
                                   credentials_sent=pending.attempt > 1))

    def abort(self, ident: int) -> bool:
        """The probe gave up on ``ident``: True if it is an open OPTIONS."""
        pending = self.open.get(ident)
        if pending is None:
            return False
        pending.settled = True  # the transaction runs on; its answer is dropped
        return True


def _request_uri(message: str) -> str:
    first = message.split("\r\n", 1)[0].split("\n", 1)[0]
    parts = first.split(" ")
    return parts[1] if len(parts) >= 3 else ""
