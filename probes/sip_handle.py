"""One SIP request queued on the pjsua2 worker, and how its outcome gets back to the probe.

The worker (probes/sip_endpoint.py) settles a ``Handle`` once, from its own
thread, with ``settle``: the outcome is set on the probe's event loop.  Shared
by the OPTIONS and INVITE sides (probes/sip_options.py, probes/sip_calls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pjsua2 as pj

from .sip_request import SipOutcome, SipRequest

if TYPE_CHECKING:
    from .sip_accounts import SipAccount


class SipSetupError(Exception):
    """A request could not be set up (transport, account)."""


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
    account: SipAccount | None = None
    attempt: int = 1
    state: str = ""
    settled: bool = False


def settle(pending: Handle, outcome: SipOutcome) -> None:
    """Give ``pending`` its outcome (the first one only), on the probe's loop."""
    if pending.settled:
        return
    pending.settled = True
    if not outcome.state:
        outcome.state = pending.state
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
        pending.loop.call_soon_threadsafe(_resolve, pending.future, outcome)


def _resolve(future: asyncio.Future[SipOutcome], outcome: SipOutcome) -> None:
    if not future.done():
        future.set_result(outcome)


def origin(event_type: int) -> str:
    """Who ended a transaction, from its pjsip event type: the outcome's ``origin``."""
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
